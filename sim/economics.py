"""Power and money: device draw from utilization, energy, and cost per token."""
from __future__ import annotations

from dataclasses import dataclass

from .hardware import DeviceSpec

HOURS_PER_YEAR = 8760.0


def device_power(device: DeviceSpec, utilization: float) -> float | None:
    """Watts drawn by one device: idle + (peak - idle) x utilization; None without a TDP.
    The summary passes the share of time the device computes (busy minus host work)."""
    if device.tdp is None:
        return None
    idle = device.idle_watts()
    return idle + (device.tdp - idle) * utilization


@dataclass
class DeviceCost:
    usd_per_hour: float | None
    pricing: str          # capex | rental | none
    note: str = ""


def device_cost_per_hour(device: DeviceSpec, pricing: str, amortize_years: float) -> DeviceCost:
    """Owning (list price over the amortization period) or renting one device for an hour."""
    if pricing in ("auto", "capex") and device.list_price_usd is not None:
        return DeviceCost(device.list_price_usd / (amortize_years * HOURS_PER_YEAR), "capex")
    if pricing in ("auto", "rental") and device.hourly_usd is not None:
        return DeviceCost(device.hourly_usd, "rental")
    wanted = {"auto": "list_price_usd or hourly_usd", "capex": "list_price_usd", "rental": "hourly_usd"}[pricing]
    return DeviceCost(None, "none", f"{device.name} has no {wanted} in the catalog; cost not computed")


def usd_per_million(usd_per_hour: float | None, tokens_per_second: float) -> float | None:
    if usd_per_hour is None or tokens_per_second <= 0:
        return None
    return usd_per_hour / (tokens_per_second * 3600.0) * 1e6
