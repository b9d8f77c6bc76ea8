"""Human units in, SI out.

Scenario files say `2s`, `100ms`, `40/s`, `400Gb/s`, `80GB`, `700W`, `989TFLOP/s`.
Everything inside the simulator is SI: seconds, bytes, bytes/s, FLOP/s, watts.
Each parser accepts a bare number (already SI) or a string with a unit, and raises
`UnitError` naming what it expected when the string is not one of those.
"""
from __future__ import annotations

import math
import re

__all__ = [
    "UnitError", "parse_duration", "parse_rate", "parse_bytes", "parse_bandwidth",
    "parse_power", "parse_flops", "format_duration", "format_bytes",
]


class UnitError(ValueError):
    """A value whose unit is missing, unknown or of the wrong kind."""


_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_SPLIT = re.compile(rf"^\s*{_NUMBER}\s*([^\d\s].*?)?\s*$")

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

_TIME = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0, "day": 86400.0,
}


def _split(value: str, kind: str, example: str) -> tuple[float, str]:
    m = _SPLIT.match(value)
    if not m:
        raise UnitError(f"'{value}' is not a {kind}; write a number with a unit, e.g. {example}")
    return float(m.group(1)), (m.group(2) or "").strip()


def _check_finite(x: float, original, kind: str) -> float:
    if not math.isfinite(x):
        raise UnitError(f"{kind} '{original}' is not a finite number")
    return x


def _numeric(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _scaled(unit: str, base_units: dict[str, float]) -> float | None:
    """Multiplier for '<prefix><base>' where base is one of base_units, or None."""
    for base, factor in sorted(base_units.items(), key=lambda kv: -len(kv[0])):
        if unit.endswith(base):
            prefix = unit[: len(unit) - len(base)]
            if prefix in _DECIMAL:
                return _DECIMAL[prefix] * factor
            if prefix in _BINARY:
                return _BINARY[prefix] * factor
    return None


def _parse(value, kind: str, example: str, multiplier) -> float:
    """Shared skeleton: a bare number is SI already; a string is a number times a unit,
    whose factor `multiplier(unit, text)` returns (or raises UnitError saying what is valid)."""
    x = _numeric(value)
    if x is not None:
        return _check_finite(x, value, kind)
    if not isinstance(value, str):
        raise UnitError(f"expected a {kind} such as {example}, got {value!r}")
    num, unit = _split(value, kind, example)
    return _check_finite(num * multiplier(unit, value), value, kind)


def _time_factor(unit: str, text: str) -> float:
    if unit not in _TIME:
        raise UnitError(f"unknown time unit '{unit}' in '{text}'; valid: ns, us, ms, s, min, h, d")
    return _TIME[unit]


def _rate_factor(unit: str, text: str) -> float:
    unit = unit.replace(" ", "")
    for prefix in ("req", "reqs", "requests", "sessions", "calls"):
        if unit.startswith(prefix + "/"):
            unit = unit[len(prefix):]
    if not unit.startswith("/") or unit[1:] not in _TIME:
        raise UnitError(f"'{text}' is not a rate; write events per time, e.g. 40/s, 2400/min, 10/h")
    return 1.0 / _TIME[unit[1:]]


def _bandwidth_factor(unit: str, text: str) -> float:
    unit = unit.replace("ps", "/s")
    if not unit.endswith("/s"):
        raise UnitError(f"'{text}' is not a bandwidth; write bits or bytes per second, e.g. 400Gb/s or 900GB/s")
    return _factor(unit[:-2], {"B": 1.0, "b": 0.125, "bit": 0.125}, text,
                   "bandwidth", "Gb/s, Gbps (bits), GB/s, TB/s (bytes)")


def _factor(unit: str, bases: dict[str, float], text: str, kind: str, valid: str) -> float:
    mult = _scaled(unit, bases)
    if mult is None:
        raise UnitError(f"unknown {kind} unit '{unit}' in '{text}'; valid: {valid}")
    return mult


def parse_duration(value) -> float:
    """'2s', '100ms', '10min', '1h', '250us' or seconds as a number -> seconds."""
    return _parse(value, "duration", "2s, 100ms, 10min", _time_factor)


def parse_rate(value) -> float:
    """'40/s', '2400/min', '10/h', '40 req/s' or events per second as a number -> 1/s."""
    return _parse(value, "rate", "40/s, 2400/min", _rate_factor)


def parse_bytes(value) -> float:
    """'80GB', '50MB', '16KiB', '1.5TB' or bytes as a number -> bytes (GB = 1e9, GiB = 2^30)."""
    return _parse(value, "size", "80GB, 512MiB", lambda u, t: _factor(
        u, {"B": 1.0, "bytes": 1.0}, t, "size", "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"))


def parse_bandwidth(value) -> float:
    """'400Gb/s', '400Gbps', '3.35TB/s', '900GB/s' or bytes/s as a number -> bytes/s.

    Lower-case b is bits (network line rates), upper-case B is bytes (memory, NVLink).
    """
    return _parse(value, "bandwidth", "400Gb/s, 3.35TB/s", _bandwidth_factor)


def parse_power(value) -> float:
    """'700W', '1.2kW', '10MW' or watts as a number -> watts."""
    return _parse(value, "power", "700W, 1.2kW", lambda u, t: _factor(u, {"W": 1.0}, t, "power", "W, kW, MW"))


def parse_flops(value) -> float:
    """'989TFLOP/s', '989TFLOPS', '1979TOPS' or FLOP/s as a number -> FLOP/s."""
    def factor(unit, text):
        unit = unit.replace("FLOPS", "FLOP/s").replace("OPS", "OP/s")
        return _factor(unit, {"FLOP/s": 1.0, "OP/s": 1.0}, text, "compute", "TFLOP/s, PFLOP/s, TFLOPS, TOPS")
    return _parse(value, "compute rate", "989TFLOP/s, 1979TOPS", factor)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    a = abs(seconds)
    if a == 0:
        return "0s"
    if a < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    if a < 1:
        return f"{seconds * 1e3:.1f}ms"
    if a < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"


def duration_or_dash(seconds: float | None) -> str:
    """A duration for tables, or '-' where there is none."""
    return "-" if seconds is None else format_duration(seconds)


def format_bytes(n: float) -> str:
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= f:
            return f"{n / f:.1f}{unit}"
    return f"{n:.0f}B"
