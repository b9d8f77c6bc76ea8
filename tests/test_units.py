import math

import pytest

from sim.spec import units


@pytest.mark.parametrize("text, seconds", [
    ("2s", 2.0), ("100ms", 0.1), ("250us", 250e-6), ("10min", 600.0), ("1h", 3600.0), ("1.5d", 129600.0), (3, 3.0),
])
def test_durations(text, seconds):
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, per_s", [("40/s", 40.0), ("2400/min", 40.0), ("36/h", 0.01), ("40 req/s", 40.0)])
def test_rates(text, per_s):
    assert units.parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text, bps", [
    ("400Gb/s", 50e9), ("400Gbps", 50e9), ("3.35TB/s", 3.35e12), ("900GB/s", 900e9), ("1GiB/s", 2**30),
])
def test_bandwidth_bits_and_bytes(text, bps):
    assert units.parse_bandwidth(text) == pytest.approx(bps)


def test_sizes_power_flops():
    assert units.parse_bytes("80GB") == 80e9
    assert units.parse_bytes("16KiB") == 16384
    assert units.parse_power("700W") == 700
    assert units.parse_power("1.2kW") == 1200
    assert units.parse_flops("989TFLOP/s") == pytest.approx(989e12)
    assert units.parse_flops("1979TOPS") == pytest.approx(1979e12)


@pytest.mark.parametrize("parser, bad, hint", [
    (units.parse_duration, "2 parsecs", "valid: ns, us, ms, s, min, h, d"),
    (units.parse_duration, "fast", "e.g. 2s"),
    (units.parse_rate, "40", None),
    (units.parse_rate, "40/fortnight", "40/s"),
    (units.parse_bandwidth, "400G", "per second"),
    (units.parse_bytes, "80GW", "valid: B, kB"),
    (units.parse_power, "700J", "valid: W, kW, MW"),
])
def test_bad_units_say_what_is_valid(parser, bad, hint):
    if hint is None:  # a bare number is a valid rate in SI
        assert parser(bad if not isinstance(bad, str) else 40) == 40
        return
    with pytest.raises(units.UnitError) as exc:
        parser(bad)
    assert hint in str(exc.value)


def test_infinite_rejected():
    with pytest.raises(units.UnitError):
        units.parse_duration(math.inf)
