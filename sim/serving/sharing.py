"""Pools that share devices: several models on the same GPUs (or MIG slices).

A pool with `share_devices_with: NAME` or `swap_devices_with: NAME` runs on the devices of
pool NAME, its host, replica by replica: the host's replica r and this pool's replica r sit on
the same devices. It inherits the host's `device`, `count` and `partition` unless it writes
them (then they must match).

Swapping (`swap_devices_with`): the models take turns holding the devices whole, one resident
at a time; each pool's autoscaler decides how many it wants and `sim.ops.model_swap` hands
the devices from one model to another, at the cost of a start (the outgoing replica drains,
the incoming one provisions and loads its weights). Each pool pays for the devices, and
draws their power, while it holds them.

Time sharing (`share_devices_with`), the rest of this note: the models are resident together.

Memory is split: each pool of the group holds its weights, activations and KV cache in
`memory_fraction` of the device memory (pools that give none split what the others leave),
and a model that does not fit its fraction is refused. Compute is shared in time: while k of
the group's engines compute, each runs at 1/k of the compute and memory rates
(`sim.ops.device_share`).

The devices are counted once. Each pool of a group pays its share of their price, idle power
and server overhead, in proportion to its memory_fraction; their dynamic power follows the
time each engine holds them (1/k of it while k compute), so the group draws what one busy
device draws.
"""
from __future__ import annotations

import copy
import math

from ..catalog import partition
from ..catalog.hardware import DeviceSpec
from ..spec.errors import Problem, ScenarioError, did_you_mean, format_path

INHERITED = ("device", "count", "partition")
HOST_FIELDS = ("share_devices_with", "swap_devices_with")     # time-shared, swapped


# ---- reading the fleet -----------------------------------------------------------------------

def inherit(src) -> None:
    """Before validation: pools that share another's devices take its device, count and
    partition where they leave them out, and each group's pools without a memory_fraction
    split what the others leave equally. Names that match no pool are errors here."""
    fleet = src.data.get("fleet") if isinstance(src.data, dict) else None
    if not isinstance(fleet, list):
        return
    hosts = _hosts(fleet, src)
    for i, j in hosts.items():
        for key in INHERITED:
            if key in fleet[j] and key not in fleet[i]:
                fleet[i][key] = copy.deepcopy(fleet[j][key])
    for members in _groups(_time_shared(fleet, hosts)).values():
        given = [fleet[m]["memory_fraction"] for m in members if "memory_fraction" in fleet[m]]
        missing = [m for m in members if "memory_fraction" not in fleet[m]]
        if not all(isinstance(f, (int, float)) for f in given):
            continue     # the schema reports it
        left = 1.0 - sum(given)
        if missing and left > 0:
            for m in missing:
                fleet[m]["memory_fraction"] = left / len(missing)


def host_field(pool) -> str | None:
    """Which of HOST_FIELDS a pool (a spec or its raw mapping) writes; None if neither."""
    get = pool.get if isinstance(pool, dict) else lambda f: getattr(pool, f, None)
    return next((f for f in HOST_FIELDS if get(f) is not None), None)


def _hosts(fleet: list, src) -> dict[int, int]:
    """Pool index -> index of the pool whose devices it shares or swaps."""
    # raw YAML, not yet validated: only names that are strings can be referred to
    names = {p.get("pool"): j for j, p in enumerate(fleet) if isinstance(p, dict) and isinstance(p.get("pool"), str)}
    out, problems = {}, []
    for i, pool in enumerate(fleet):
        field = host_field(pool) if isinstance(pool, dict) else None
        if field is None:
            continue
        host = pool[field]
        path = ("fleet", i, field)
        j = names.get(host) if isinstance(host, str) else None
        other = host_field(fleet[j]) if j is not None else None
        if all(pool.get(f) is not None for f in HOST_FIELDS):
            problems.append(Problem(src.loc_of(path), format_path(path), "a pool either time-shares another's "
                                    "devices (share_devices_with) or swaps with it (swap_devices_with), not both"))
        elif j is None or j == i:
            others = [n for n in names if n != pool.get("pool") and isinstance(n, str)]
            why = "a pool cannot share its own devices" if j == i else f"no pool '{host}'"
            problems.append(Problem(src.loc_of(path), format_path(path),
                                    why + did_you_mean(str(host), others, "pools")))
        elif other is not None:
            problems.append(Problem(src.loc_of(path), format_path(path),
                                    f"pool '{host}' itself runs on pool '{fleet[j][other]}''s "
                                    f"devices: write {field}: {fleet[j][other]}"))
        else:
            out[i] = j
    if problems:
        raise ScenarioError(problems)
    return out


def _time_shared(fleet: list, hosts: dict[int, int]) -> dict[int, int]:
    """The pools of `hosts` that time-share their host's devices (not those that swap)."""
    return {i: j for i, j in hosts.items() if fleet[i].get("share_devices_with") is not None}


def _groups(hosts: dict[int, int]) -> dict[int, list[int]]:
    """Host index -> the indices of the pools on its devices, the host first."""
    groups: dict[int, list[int]] = {}
    for i, j in sorted(hosts.items()):
        groups.setdefault(j, [j]).append(i)
    return groups


# ---- a pool's device ----------------------------------------------------------------------

def resolve_device(pool, i: int, device: DeviceSpec, key: str, src) -> tuple[DeviceSpec, str]:
    """Pool i's device as its replicas see it: a MIG slice if it names a partition, and with
    only its memory_fraction of the memory (and its share of the cost) if it shares devices."""
    if pool.partition is not None:
        device, key = partition.resolve(pool, i, device, key, src)
    if pool.memory_fraction is not None:
        fleet = src.data["fleet"]
        hosts = _time_shared(fleet, _hosts(fleet, src))
        group = next((g for g in _groups(hosts).values() if i in g), [i])
        total = sum(fleet[m].get("memory_fraction") or 0.0 for m in group)
        share = pool.memory_fraction / total    # the group pays for whole devices
        device = memory_share(device, pool.memory_fraction, share)
        key = f"{key} (memory_fraction {pool.memory_fraction:g})"
    return device, key


def memory_share(device: DeviceSpec, fraction: float, share: float) -> DeviceSpec:
    """`device` as one of the pools sharing it sees it: `fraction` of its memory; `share` of
    its price, idle power and server overhead; all of its dynamic power range (which the
    time the pool's engines hold the device scales)."""
    idle = device.idle_watts()
    node = device.node
    if node is not None:
        node = node.model_copy(update={"power": _times(node.power, share), "idle_power": _times(node.idle_power, share),
                                       "list_price_usd": _times(node.list_price_usd, share)})
    return device.model_copy(update={
        "name": f"{device.name} ({fraction:g} of its memory)",
        "memory": device.memory * fraction,
        "tdp": None if device.tdp is None else device.tdp - idle * (1.0 - share),
        "idle_power": _times(idle, share),
        "list_price_usd": _times(device.list_price_usd, share),
        "hourly_usd": _times(device.hourly_usd, share),
        "node": node,
    })


def _times(value, share):
    return None if value is None else value * share


# ---- checks across pools -------------------------------------------------------------------

def check(spec, pools, src) -> list[Problem]:
    """What the pools that share devices (and the sliced pools) must agree on; notes the
    cost rules in their deployments' assumptions."""
    out = partition.problems(pools, src)
    names = {p.pool: i for i, p in enumerate(spec.fleet)}
    hosts = {i: names[p.share_devices_with] for i, p in enumerate(spec.fleet) if p.share_devices_with}
    groups = _groups(hosts)
    swaps = _groups({i: names[p.swap_devices_with] for i, p in enumerate(spec.fleet) if p.swap_devices_with})

    def problem(i, path, message):
        full = ("fleet", i) + path
        out.append(Problem(src.loc_of(full), format_path(full), message))

    for j, members in swaps.items():
        if j in groups:
            problem(members[1], ("swap_devices_with",), f"pool {spec.fleet[j].pool}'s devices are time-shared "
                                                         f"(share_devices_with); they cannot also be swapped")
            continue
        _check_swap_group(spec, pools, members, problem)

    for i, p in enumerate(spec.fleet):
        swapping = any(i in members for members in swaps.values())     # refused below
        if p.memory_fraction is not None and i not in hosts and i not in groups and not swapping:
            problem(i, ("memory_fraction",),
                    "memory_fraction splits the memory of devices that pools share; no pool shares this one's "
                    f"(another pool would write share_devices_with: {p.pool})")
    for members in groups.values():
        _check_share_group(spec, pools, members, problem)
    for field in ("power", "failures") if groups or swaps else ():
        if getattr(spec, field, None) is not None:
            how = "share_devices_with" if groups else "swap_devices_with"
            out.append(Problem(src.loc_of((field,)), field, f"{field}: with pools that share devices "
                               f"({how}) is not modelled in this version"))
    return out


def _check_share_group(spec, pools, members: list[int], problem) -> None:
    """Pools that time-share a host's devices (the host first): its device, count, partition
    and tp; one continuous-batching token engine per replica, preloaded, not autoscaled;
    memory fractions that add up to at most 1. Notes the cost rules."""
    host = spec.fleet[members[0]]
    _check_inherited(spec, members, "runs on", problem)
    for i in members[1:]:
        p = spec.fleet[i]
        if p.serve.tp != host.serve.tp:
            problem(i, ("serve", "tp"), f"pool {p.pool} runs replica by replica on pool {host.pool}'s devices: "
                                        f"give it {host.pool}'s tp ({host.serve.tp})")
    for i in members:
        p = spec.fleet[i]
        serve = p.serve
        if serve.pp > 1 or serve.ep > 1:
            problem(i, ("serve", "pp" if serve.pp > 1 else "ep"),
                    "pools that share devices run one engine per replica here: pp and ep must be 1")
        if serve.engine.batching != "continuous" or pools[i].deployment.model.diffusion is not None:
            problem(i, ("serve",), "time sharing of devices is modelled for continuous-batching token engines; "
                                   f"{pools[i].model_key} with {serve.engine.batching} batching is not one")
        if serve.weights != "preloaded":
            problem(i, ("serve", "weights"), "loading weights over the fabric is not modelled for pools that "
                                             "share devices; use weights: preloaded")
        if getattr(p, "autoscale", None) is not None:
            problem(i, ("autoscale",), "autoscaling pools that share devices is not modelled: a replica that "
                                       "stops frees no device while the other pools' replicas run on it")
    fractions = [spec.fleet[m].memory_fraction for m in members]
    if None in fractions:
        i = members[fractions.index(None)]
        problem(i, ("memory_fraction",), f"the other pools on {host.pool}'s devices take all of their memory; "
                                         f"give each pool of the group a memory_fraction")
    elif sum(fractions) > 1.0 + 1e-9:
        problem(members[-1], ("memory_fraction",),
                f"pools {', '.join(spec.fleet[m].pool for m in members)} share {host.pool}'s devices with memory "
                f"fractions adding up to {sum(fractions):g}; they must not exceed 1")
    note = (f"pools {', '.join(spec.fleet[m].pool for m in members)} share {host.pool}'s devices: each holds its "
            f"memory_fraction of their memory; while k of their engines compute, each runs at 1/k speed; the "
            f"devices are counted once, each pool paying its memory_fraction's share of their price, idle power "
            f"(the catalog's, else 20% of TDP) and server overhead, and the dynamic power of the time its engines "
            f"hold them")
    for m in members:
        pools[m].deployment.assumptions.append(note)


def _check_inherited(spec, members: list[int], how: str, problem) -> None:
    """The pools on a host's devices (members[1:]) have its device, count and partition."""
    host = spec.fleet[members[0]]
    for i in members[1:]:
        p = spec.fleet[i]
        for field in INHERITED:
            if getattr(p, field) != getattr(host, field):
                problem(i, (field,), f"pool {p.pool} {how} pool {host.pool}'s devices: its {field} must be "
                                     f"{host.pool}'s; leave it out to inherit it")


def _check_swap_group(spec, pools, members: list[int], problem) -> None:
    """Pools that swap devices: whole replicas of the same shape, each with an autoscaler to
    say how many it wants, together starting on no more replicas than the devices hold."""
    host = spec.fleet[members[0]]
    _check_inherited(spec, members, "swaps models on", problem)
    for i in members[1:]:
        p = spec.fleet[i]
        for field in ("tp", "pp", "ep"):
            if getattr(p.serve, field) != getattr(host.serve, field):
                problem(i, ("serve", field), f"pool {p.pool} takes pool {host.pool}'s replicas' devices in turn: "
                                             f"give it {host.pool}'s {field} ({getattr(host.serve, field)})")
    initial = 0
    for i in members:
        p = spec.fleet[i]
        if p.memory_fraction is not None:
            problem(i, ("memory_fraction",), "a pool that swaps holds all of the devices' memory while its model is "
                                             "resident; memory_fraction is for pools that share devices at once")
        if p.autoscale is None:
            problem(i, ("autoscale",), f"pools {', '.join(spec.fleet[m].pool for m in members)} swap devices: each "
                                       f"needs autoscale: (its policy says how many replicas its model wants)")
        else:
            initial += p.autoscale.initial if p.autoscale.initial is not None else p.autoscale.min
    if initial > host.replicas:
        problem(members[-1], ("autoscale",), f"pools {', '.join(spec.fleet[m].pool for m in members)} start with "
                                             f"{initial} replicas (initial, else min) on {host.replicas} replicas' "
                                             f"devices; lower their initial or min")
    note = (f"pools {', '.join(spec.fleet[m].pool for m in members)} swap {host.pool}'s devices: one model resident "
            f"per replica's devices at a time; a swap drains the outgoing replica, then provisions the incoming one "
            f"and loads its weights; each pool pays for the devices, and draws their power, while it holds them "
            f"(owned hardware, economics.pricing own: {host.pool} also pays for the time none holds them)")
    for m in members:
        pools[m].deployment.assumptions.append(note)


# ---- where replicas run ------------------------------------------------------------------------

def shares_devices(scenario) -> bool:
    """Whether any pool runs on slices or on another pool's devices."""
    return any(p.spec.partition is not None or host_field(p.spec) for p in scenario.pools)


def host_of(pool) -> str | None:
    """The name of the pool whose devices this pool (a spec) runs on, shared or swapped."""
    return pool.share_devices_with or pool.swap_devices_with


def accelerators_needed(spec) -> int:
    """Accelerators of the topology the fleet occupies: a pool's slices fill whole GPUs of
    their own; a pool on another's devices adds none."""
    return sum(0 if host_of(p) else partition.accelerators(p) if p.partition else p.count
               for p in spec.fleet)


def place(scenario) -> dict[int, list[str]]:
    """Engine index -> its accelerators, as `sim.serving.placement.place` does (without a topology,
    devices named by index), except that the slices of a sliced pool take a GPU's slices in
    turn (`instances` per accelerator), and a pool on another's devices takes its host's,
    replica by replica."""
    topo = scenario.spec.topology
    accels = topo.accelerators() if topo is not None else [str(i) for i in range(accelerators_needed(scenario.spec))]
    groups: dict[str, list[list[str]]] = {}
    k = 0
    for pool in scenario.pools:
        spec = pool.spec
        if host_of(spec):
            continue
        n = pool.replicas
        if spec.partition is not None:
            per = partition.slices_per_gpu(spec)
            groups[pool.name] = [[accels[k + r // per]] for r in range(n)]
            k += math.ceil(n / per)
        else:
            width = spec.serve.tp * spec.serve.pp * spec.serve.ep
            groups[pool.name] = [accels[k + r * width:k + (r + 1) * width] for r in range(n)]
            k += n * width
    out, engine = {}, 0
    for pool in scenario.pools:
        serve = pool.spec.serve
        for group in groups[host_of(pool.spec) or pool.name]:
            for rank in range(serve.pp * serve.ep):
                # an expert-parallel rank's own device first: its attention and KV live there
                out[engine] = group if serve.ep == 1 else group[rank:] + group[:rank]
                engine += 1
    return out


def engine_groups(scenario) -> list[list[int]]:
    """Engines that time-share devices: the host's replica r with each sharer's replica r
    (not those that swap: one of them computes at a time)."""
    start, k = {}, 0
    for pool in scenario.pools:
        start[pool.name] = k
        k += pool.replicas * pool.spec.engines_per_replica
    groups: dict[tuple, list[int]] = {}
    for pool in scenario.pools:
        host = pool.spec.share_devices_with
        for r in range(pool.replicas if host else 0):
            groups.setdefault((host, r), [start[host] + r]).append(start[pool.name] + r)
    return list(groups.values())


def swap_groups(scenario) -> list[list]:
    """The pools that swap devices, by host: each list the host's pool first, then its swappers."""
    groups: dict[str, list] = {}
    for pool in scenario.pools:
        if pool.spec.swap_devices_with:
            host = next(p for p in scenario.pools if p.name == pool.spec.swap_devices_with)
            groups.setdefault(host.name, [host]).append(pool)
    return list(groups.values())
