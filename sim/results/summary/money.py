"""What tokens cost: each pool's hour split over input and output tokens, break-even prices."""
from __future__ import annotations

import numpy as np

from ...catalog import economics
from ...core.column_store import in_chunks
from ...core.metrics import COMPLETED
from ...simulation import RunResult
from ...timing import kernels


def request_costs(table, pool_index: np.ndarray, token_prices: np.ndarray, rows=slice(None)) -> np.ndarray:
    """Each completed request's share of the fleet's cost: its input and output tokens at its
    pool's split prices (which share the pool's hour, idle time included, over the tokens it
    finished in the window); NaN where no price is known or it did not complete."""
    prices = token_prices[pool_index]
    usd = table.prompt[rows] * prices[:, 0] + table.output[rows] * prices[:, 1]
    return np.where(table.state[rows] == COMPLETED, usd, np.nan)


def output_weight(result: RunResult, pool, table, served_in, idx) -> float | None:
    """Accelerator time of one output token over that of one input token on this pool, at
    the run's operating point (its mean prompt, and its mean decode batch: output tokens
    per iteration), from the kernels; None when the pool served nothing."""
    if not served_in.any():
        return None
    prompt = float(table.prompt[served_in].mean())
    output = float(table.output[served_in].mean())
    iterations = sum(float(log["iterations"][np.isin(log["replica"], idx)].sum())
                     for _, log in in_chunks(result.log.columns(), result.log.store))
    batch = max(1, int(round(float(table.output[served_in].sum()) / max(iterations, 1.0))))
    p = pool.deployment.params
    P = max(1, int(round(prompt)))
    pf = kernels.prefill_time(p, P) / P
    dec = kernels.decode_time(p, batch, int(round(prompt + output / 2))) / batch
    return dec / pf if pf > 0 else None


def cost_section(devices_usd, energy_usd, notes, basis, throughput, slo, weights, busy_fraction, eco,
          capacity: float | None = None, capacity_note: str = "") -> dict:
    """The hour's cost and what it makes a token cost: blended, split between input and
    output tokens by the accelerator time each takes, at the SLO, and at break-even."""
    per_hour = None if notes else devices_usd + energy_usd
    tin, tout = throughput["input_tokens_per_s"], throughput["output_tokens_per_s"]
    total_tps = tin + tout
    weight = (sum(w * t for w, t in weights) / sum(t for _, t in weights)
              if weights and sum(t for _, t in weights) > 0 else None)
    usd_in, usd_out = economics.split_input_output(per_hour, tin, tout, weight)
    per_m = economics.usd_per_million(per_hour, total_tps)
    u = eco.utilization
    even = economics.break_even(per_hour, capacity, u) if u is not None else None
    market = eco.market_usd_per_m_tokens
    return {
        "pricing": basis.name or "none",
        "pricing_basis": economics.describe(basis.name, eco.amortize_years, eco.cost_of_capital, eco.usd_per_kwh,
                                            eco.pue) + (f" ({basis.chosen_by})" if basis.chosen_by else ""),
        "devices_usd_per_hour": None if notes else devices_usd,
        "energy_usd_per_hour": None if notes else energy_usd,
        "usd_per_hour": per_hour,
        "usd_per_day": None if per_hour is None else per_hour * 24.0,
        "usd_per_m_tokens": per_m,
        "usd_per_m_output_tokens": economics.usd_per_million(per_hour, tout),
        "usd_per_m_input_tokens_split": usd_in,
        "usd_per_m_output_tokens_split": usd_out,
        "output_token_weight": weight,
        "usd_per_m_tokens_at_slo": economics.usd_per_million(per_hour, slo.get("goodput_tokens_per_s") or 0.0),
        "busy_fraction": busy_fraction,
        "capacity_tokens_per_s": capacity,
        "capacity_utilization": None if not capacity else total_tps / capacity,
        "capacity_note": capacity_note,
        "break_even_utilization": u,
        "break_even_usd_per_m_tokens": even,
        "market_usd_per_m_tokens": market,
        "margin": None if market is None or per_m is None else (market - per_m) / market,
        "margin_at_break_even_utilization": None if market is None or even is None else (market - even) / market,
        "notes": notes,
    }
