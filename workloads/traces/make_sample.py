"""Regenerate sample-conv.csv: a small synthetic trace in the Azure LLM inference schema.

Not real traffic: gamma arrivals (5.5/s, cv 1.1) and lognormal lengths shaped like the
public Azure conversation trace, so tests and examples have a trace to replay.
    python workloads/traces/make_sample.py
"""
import os

import numpy as np
import pandas as pd

rng = np.random.default_rng(2023)
n = 1200
gaps = rng.gamma(1 / 1.1**2, 1.1**2 / 5.5, n)
t0 = pd.Timestamp("2023-11-16 18:15:46")
stamps = t0 + pd.to_timedelta(np.cumsum(gaps), unit="s")


def lognormal(mean, cv, lo, hi):
    s2 = np.log1p(cv**2)
    return np.clip(np.rint(rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)), lo, hi).astype(int)


frame = pd.DataFrame({
    "TIMESTAMP": stamps.strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
    "ContextTokens": lognormal(1155, 0.96, 2, 14050),
    "GeneratedTokens": lognormal(211, 0.77, 7, 1000),
})
frame.to_csv(os.path.join(os.path.dirname(__file__), "sample-conv.csv"), index=False)
