"""Figures per tenant: the streams that share a name."""
from __future__ import annotations

import numpy as np

from ...core.metrics import FAILED, REJECTED, SHED, unserved
from .latency import slo_section
from .stats import LATENCIES, stats


def tenants_section(spec, table, cols, measured, done, finished_in, usd, window) -> list[dict]:
    """Per tenant: its traffic, what became of it, its latency, its SLO attainment against
    its own targets (or the scenario's), and its cost."""
    tenant_of = [s.tenant or s.name for s in spec.workload]
    out = []
    for tenant in dict.fromkeys(tenant_of):
        streams = [i for i, t in enumerate(tenant_of) if t == tenant]
        mine = np.isin(table.stream, streams)
        own = next((spec.workload[i].slo for i in streams if spec.workload[i].slo is not None), None)
        targets = (own or spec.slo).targets
        rows = slice(None) if mine.all() else np.flatnonzero(mine)   # all: views, not copies
        sub = table.columns(rows)
        m, d, f = measured[rows], done[rows], finished_in[rows]
        latency = {k: stats(sub[k][d]) for k in LATENCIES}
        tokens = float((table.prompt + table.output)[mine & finished_in].sum())
        spent = usd[mine & finished_in]
        known = not np.isnan(spent).any()
        table.let_go()
        out.append({
            "tenant": tenant,
            "streams": [spec.workload[i].name for i in streams],
            "priority": sorted({spec.workload[i].priority for i in streams}),
            "measured_requests": int(m.sum()),
            "completed": int(d.sum()),
            "turned_away": int((m & unserved(table.state[rows])).sum()),
            **{name: int((m & (table.state[rows] == code)).sum())
               for name, code in (("rejected", REJECTED), ("shed", SHED), ("failed", FAILED))},
            "latency_s": latency,
            "slo": slo_section(targets, sub, m, d, f, latency, _Rows(table, rows), window),
            "tokens_per_s": tokens / window,
            "usd_per_hour": float(spent.sum()) / window * 3600.0 if known else None,
            "usd_per_m_tokens": float(spent.sum()) / tokens * 1e6 if known and tokens else None,
        })
    return out


class _Rows:
    """The columns `_slo` reads, for a subset of the requests."""

    def __init__(self, table, rows):
        self.prompt, self.output, self.state = table.prompt[rows], table.output[rows], table.state[rows]
