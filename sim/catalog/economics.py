"""Power and money: device and server draw from utilization, and what an hour and a token cost.

Power of one accelerator: idle + (peak - idle) x a x f^3, where a is the share of time it
computes and f its clock as a fraction of full speed (1 unless a power cap holds; see
sim.ops.power_cap for the relation). Its server adds the catalog's node overhead (CPUs,
NICs, switches, fans), shared over the server's accelerators.

Cost of an hour, on one basis for every pool of a run (and every fleet of a comparison):
`own` (list prices of the devices and their servers, paid off over the amortization period
at the cost of capital, plus electricity at facility power) or `rent` (the hourly price,
which already pays for power and the building). `auto` takes `own` when every device has a
list price and a server price, else `rent` when every one has an hourly price (`basis`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .hardware import DeviceSpec

HOURS_PER_YEAR = 8760.0


def device_power(device: DeviceSpec, utilization: float) -> float | None:
    """Watts drawn by one device: idle + (peak - idle) x utilization; None without a TDP.
    The summary passes the share of time the device computes (busy minus host work),
    weighted by clock^3 while a power cap holds."""
    if device.tdp is None:
        return None
    idle = device.idle_watts()
    return idle + (device.tdp - idle) * utilization


def node_power_per_device(device: DeviceSpec, active: float) -> float:
    """A device's share of its server's overhead draw; 0 when the catalog has none."""
    node = device.node
    if node is None or node.power is None:
        return 0.0
    return node.watts(active) / node.devices


def capital_recovery_factor(rate: float, years: float) -> float:
    """The share of a price paid each year to pay it off over `years` at annual `rate`
    (an annuity); 1 / years when the rate is 0."""
    if rate == 0:
        return 1.0 / years
    g = (1.0 + rate) ** years
    return rate * g / (g - 1.0)


OWN, RENT = "own", "rent"
PRICE_FIELD = {OWN: "list_price_usd", RENT: "hourly_usd"}


@dataclass
class Basis:
    """The pricing every pool is costed on, or why none applies to all of them."""
    name: str | None                     # own | rent | None
    missing: list[tuple[str, str]]       # (device, catalog field) that the wanted basis lacks
    chosen_by: str = ""                  # how auto chose it

    def problem(self) -> str:
        """What to set, naming each device and field."""
        fields = "; ".join(f"{dev} has no {field}" for dev, field in self.missing)
        dev, field = self.missing[0]
        example = (f"{{base: {dev}, node: {{devices: 8, list_price_usd: ...}}}}" if field.startswith("node.")
                   else f"{{base: {dev}, {field}: ...}}")
        return (f"{fields} in the catalog: give it on the pool's device (device: {example}) or price every "
                f"device on another basis (economics.pricing)")


def _missing(device: DeviceSpec, name: str) -> list[str]:
    """The catalog fields a device needs to be priced on basis `name`: renting, its hourly
    price; owning, its list price and its server's (else owned devices compare unequally, one
    with its server and one without)."""
    if name == RENT:
        return [] if device.hourly_usd is not None else ["hourly_usd"]
    out = [] if device.list_price_usd is not None else ["list_price_usd"]
    if device.node is None or device.node.list_price_usd is None:
        out.append("node.list_price_usd")
    return out


def basis(devices: dict[str, DeviceSpec], wanted: str) -> Basis:
    """One basis for all `devices` (key -> spec): the one asked for, or with `auto`, own when
    every device has a list price (and its server one), else rent when every one has an
    hourly price."""
    def lacking(name):
        return [(key, field) for key, d in devices.items() for field in _missing(d, name)]
    if wanted in (OWN, RENT):
        missing = lacking(wanted)
        return Basis(None if missing else wanted, missing)
    for name, why in ((OWN, "every device has a list price and a server price"),
                      (RENT, "every device has an hourly price")):
        if not lacking(name):
            return Basis(name, [], f"auto: {why}")
    return Basis(None, lacking(OWN) + lacking(RENT))


def one_basis(devices: dict[str, DeviceSpec], wanted: str, loc, why: str) -> Basis:
    """`basis` where every device must be priced alike (a comparison, a plan): a device without
    the price is an error at `loc`, saying `why` and naming the device and the field."""
    from ..spec.errors import ScenarioError
    chosen = basis(devices, wanted)
    if chosen.name is None:
        raise ScenarioError.one(loc, "economics.pricing", f"{why}: {chosen.problem()}")
    return chosen


def describe(name: str | None, years: float, rate: float, usd_per_kwh: float, pue: float) -> str:
    """The basis in words, for every table that shows money."""
    if name == OWN:
        return (f"own: list prices of devices and servers over {years:g} years at {rate:.0%}/year, plus "
                f"electricity at ${usd_per_kwh:g}/kWh x PUE {pue:g}")
    if name == RENT:
        return "rent: on-demand hourly prices (power included)"
    return "none: no basis prices every device"


@dataclass
class DeviceCost:
    usd_per_hour: float | None
    pricing: str          # own | rent | none
    note: str = ""

    @property
    def pays_for_power(self) -> bool:
        """Whether electricity is billed on top (owned hardware) or included (rented)."""
        return self.pricing == OWN


def device_cost_per_hour(device: DeviceSpec, pricing: str | None, amortize_years: float,
                         cost_of_capital: float = 0.0) -> DeviceCost:
    """Owning (the device's list price and its share of its server's, as an annuity over
    the amortization period) or renting one device for an hour."""
    if pricing == OWN and device.list_price_usd is not None:
        price = device.list_price_usd
        node = device.node
        if node is not None and node.list_price_usd is not None:
            price += node.list_price_usd / node.devices
        yearly = price * capital_recovery_factor(cost_of_capital, amortize_years)
        return DeviceCost(yearly / HOURS_PER_YEAR, OWN)
    if pricing == RENT and device.hourly_usd is not None:
        return DeviceCost(device.hourly_usd, RENT)
    if pricing is None:
        return DeviceCost(None, "none", f"{device.name}: no pricing basis covers every device; cost not computed")
    return DeviceCost(None, "none", f"{device.name} has no {PRICE_FIELD[pricing]} in the catalog; cost not computed")


def usd_per_million(usd_per_hour: float | None, tokens_per_second: float) -> float | None:
    if usd_per_hour is None or tokens_per_second <= 0:
        return None
    return usd_per_hour / (tokens_per_second * 3600.0) * 1e6


def split_input_output(usd_per_hour: float | None, input_tps: float, output_tps: float,
                       output_weight: float | None) -> tuple[float | None, float | None]:
    """Dollars per million input and per million output tokens, sharing the hour's cost so
    that an output token costs `output_weight` input tokens (the ratio of the accelerator
    time each takes: see summary)."""
    if usd_per_hour is None or output_weight is None or input_tps + output_tps <= 0:
        return None, None
    units = input_tps + output_weight * output_tps        # input-token equivalents per second
    per_input = usd_per_hour / (units * 3600.0) * 1e6
    return per_input, per_input * output_weight


def break_even(usd_per_hour: float | None, capacity_tokens_per_second: float | None,
               utilization: float) -> float | None:
    """Dollars per million tokens at which the fleet pays for itself when it serves a share
    `utilization` of its capacity (`sim.results.capacity`):

        break-even = usd_per_hour / (capacity x utilization x 3600) x 1e6
    """
    if usd_per_hour is None or not capacity_tokens_per_second:
        return None
    return usd_per_million(usd_per_hour, capacity_tokens_per_second * utilization)
