"""Interconnect topologies: schema, builders, queries, validation, summary and drawing.

A topology is an undirected networkx graph. Nodes are accelerators, CPUs, NICs, PCIe
switches, scale-up switches (NVSwitch), fabric switches and storage; every link is full
duplex, with `bandwidth` in bytes/s per direction and `latency` in seconds. Write the graph
out (`nodes:`, `links:`) or let a builder generate it (`build: {kind: hgx-node |
rail-leaf-spine | torus, ...}`); explicit nodes and links are added on top of a built graph.

Node attributes: `kind`; `host` (the server a host-local node sits in, None for fabric
switches and storage); accelerators also `index` (placement order) and `domain` (their
scale-up domain).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Annotated, Literal, Union

import networkx as nx
from pydantic import Field, PrivateAttr

from ..spec import limits, source
from ..spec.base import Bytes, BytesPerSecond, Seconds, Spec
from ..spec.errors import Problem, ScenarioError, did_you_mean, format_path
from ..spec.validate import validate

NodeKind = Literal["accelerator", "cpu", "host-memory", "nic", "pcie-switch", "scale-up-switch", "switch",
                   "storage"]
HOST_KINDS = {"accelerator", "cpu", "nic", "pcie-switch", "scale-up-switch"}
Problems = list[tuple[tuple, str]]  # (field path inside the topology, message)


class TopologyNode(Spec):
    id: str
    kind: NodeKind
    host: str | None = None  # the server it sits in; inferred from in-server links when left out


class TopologyLink(Spec):
    a: str
    b: str
    bandwidth: BytesPerSecond  # per direction; validate_topology checks it is positive
    latency: Seconds = 0.0


# ---- builders --------------------------------------------------------------------------


class HgxNode(Spec):
    """One NVIDIA HGX / DGX H100 8-GPU server.

    Defaults follow the NVIDIA DGX H100 user guide (system topology) and H100 datasheet:
    8 GPUs on the NVSwitch fabric (4 NVSwitch chips, modelled as one switch; NVLink 4 gives
    900 GB/s bidirectional = 450 GB/s per direction per GPU); GPUs in pairs behind PCIe Gen5
    switches (x16 = 64 GB/s per direction); 8 ConnectX-7 400 Gb/s NICs, one per GPU on its
    PCIe switch (rail-optimized compute fabric); 2 Xeon Platinum 8480C sockets, each
    8 channels of DDR5-4800 = 8 x 38.4 GB/s = 307.2 GB/s of host memory bandwidth.
    """

    kind: Literal["hgx-node"]
    gpus: int = 8
    scale_up: BytesPerSecond = 450e9  # NVLink per GPU, per direction
    scale_up_latency: Seconds = 1e-6  # catalog nvidia-h100-sxm scale_up_latency (1.06 us), rounded
    pcie_switches: int = 4
    pcie: BytesPerSecond = 64e9  # PCIe Gen5 x16, per direction
    pcie_latency: Seconds = 1e-6  # coarse, as topologies/hgx-h100-1node.yaml
    nics: int = 8  # 8 = one per GPU (rail-optimized), 4 = one per GPU pair
    nic_rate: BytesPerSecond = 50e9  # 400 Gb/s (ConnectX-7 NDR)
    cpus: int = 2
    host_memory_bandwidth: BytesPerSecond = 307.2e9  # per CPU socket
    # The host path. A GPUDirect-RDMA NIC moves data between GPU memory and the wire; a
    # host-staged (legacy) one bounces it through host memory, which every such flow then
    # crosses twice, and a CPU core carries each message through the kernel's TCP stack.
    # host_staging_cost: Cai et al., "Understanding Host Network Stack Overheads" (SIGCOMM
    # 2021, www.cs.cornell.edu/~ragarwal/pubs/network-stack.pdf): the Linux stack sustains
    # ~42 Gb/s per core on one long flow with every offload on, so 1 MiB costs ~200 us of a
    # core. nic_message_cost (RDMA verbs per message) is an assumption: set both from your
    # own measurements.
    nic_path: Literal["gpudirect", "host-staged"] = "gpudirect"
    nic_message_size: Bytes = 1 << 20
    nic_message_cost: Seconds = 1e-6
    host_staging_cost: Seconds = 200e-6  # CPU time per message on the host-staged path
    # The head node runs each replica's engine loop (scheduling, kernel launch). `cpu_speed`
    # is single-thread speed relative to the host behind the catalog's iteration_overhead.
    cpu_cores: int = 56  # Xeon Platinum 8480C, per socket (DGX H100 datasheet: 2 x 56 cores)
    cpu_speed: float = 1.0

    def problems(self) -> Problems:
        out = _positive(self, "gpus", "pcie_switches", "nics", "cpus", "scale_up", "pcie", "nic_rate",
                        "host_memory_bandwidth", "nic_message_size", "cpu_cores", "cpu_speed")
        out += _bounded(self, "gpus", "pcie_switches", "nics", "cpus", "cpu_cores")
        out += _not_negative(self, "scale_up_latency", "pcie_latency", "nic_message_cost", "host_staging_cost")
        if out:
            return out
        g, p, n = self.gpus, self.pcie_switches, self.nics
        if g % p:
            out.append((("pcie_switches",), f"{g} GPUs do not split evenly over {p} PCIe switches; "
                                            f"choose a divisor of {g}"))
        if n != g and 2 * n != g:
            pair = f" or {g // 2} (one per GPU pair)" if g % 2 == 0 else ""
            out.append((("nics",), f"nics must be {g} (one per GPU, rail-optimized){pair}, got {n}"))
        elif n % p:
            out.append((("nics",), f"{n} NICs do not split evenly over {p} PCIe switches"))
        return out

    def add_to(self, g: nx.Graph, name: str) -> None:
        self.add_server(g, "s0")

    def add_server(self, g: nx.Graph, host: str) -> list[str]:
        """Add one server's nodes and links under ids '<host>.gpu0' etc.; return its NICs in rail order."""
        gpus = [f"{host}.gpu{i}" for i in range(self.gpus)]
        pcie = [f"{host}.pcie{j}" for j in range(self.pcie_switches)]
        cpus = [f"{host}.cpu{c}" for c in range(self.cpus)]
        nics = [f"{host}.nic{k}" for k in range(self.nics)]
        nvswitch = f"{host}.nvswitch"
        for gpu in gpus:
            g.add_node(gpu, kind="accelerator", host=host)
        g.add_node(nvswitch, kind="scale-up-switch", host=host)
        g.add_nodes_from(pcie, kind="pcie-switch", host=host)
        g.add_nodes_from(cpus, kind="cpu", host=host, memory_bandwidth=self.host_memory_bandwidth,
                         cores=self.cpu_cores, speed=self.cpu_speed)
        for cpu in cpus:  # host memory: host-staged transfers write it and read it back
            g.add_node(f"{cpu}.mem", kind="host-memory", host=host)
            _link(g, cpu, f"{cpu}.mem", self.host_memory_bandwidth, 0.0)
        for k, nic in enumerate(nics):
            g.add_node(nic, kind="nic", host=host, rail=k, rate=self.nic_rate, path=self.nic_path,
                       message_size=self.nic_message_size, message_cost=self.nic_message_cost,
                       staging_cost=self.host_staging_cost)
        gpus_per_switch = self.gpus // self.pcie_switches
        for i, gpu in enumerate(gpus):
            _link(g, gpu, nvswitch, self.scale_up, self.scale_up_latency)
            _link(g, gpu, pcie[i // gpus_per_switch], self.pcie, self.pcie_latency)
        gpus_per_nic = self.gpus // self.nics
        for k, nic in enumerate(nics):  # NIC k sits on the switch of the GPU(s) it serves
            _link(g, nic, pcie[k * gpus_per_nic // gpus_per_switch], self.pcie, self.pcie_latency)
        for j, switch in enumerate(pcie):
            _link(g, switch, cpus[j * self.cpus // self.pcie_switches], self.pcie, self.pcie_latency)
        for a, b in itertools.pairwise(cpus):  # socket interconnect (UPI), taken at the PCIe rate
            _link(g, a, b, self.pcie, self.pcie_latency)
        return nics


class Storage(Spec):
    count: int = 0
    link: BytesPerSecond = 50e9  # per storage node; 400 Gb/s assumed, set to your appliance's ports


class RailLeafSpine(HgxNode):
    """`nodes` HGX servers on a rail-optimized two-tier fat tree (NVIDIA DGX SuperPOD design).

    NIC i of every server goes to a leaf switch of rail i, `servers_per_leaf` servers a leaf
    (a DGX SuperPOD scalable unit is 32 servers: one leaf per rail per SU); every leaf links
    to every spine with (leaf downlink capacity) / `oversubscription` in all. The defaults
    give the SuperPOD reference architecture's 2-SU size: 64 servers, 512 GPUs, 16 leaf and
    8 spine switches. Storage nodes hang off the spines, for weight loading.
    """

    kind: Literal["rail-leaf-spine"]
    nodes: int = 64
    servers_per_leaf: int = 32
    spines: int = 8
    oversubscription: float = 1.0  # 1 = non-blocking
    switch_latency: Seconds = 1e-6  # per switch hop
    storage: Storage = Storage()

    def problems(self) -> Problems:
        out = super().problems() + _positive(self, "nodes", "servers_per_leaf", "spines")
        out += _bounded(self, "nodes", "servers_per_leaf", "spines")
        if not out and self.nodes * self.gpus > limits.DEVICES.value:
            out.append((("nodes",), limits.DEVICES.message(f"{self.nodes:,} servers x {self.gpus} GPUs")))
        out += _not_negative(self, "switch_latency")
        if self.oversubscription <= 0:
            out.append((("oversubscription",), f"oversubscription must be positive (1 = non-blocking, "
                                               f"4 = leaf uplinks carry a quarter of the downlinks), "
                                               f"got {self.oversubscription:g}"))
        if self.storage.count < 0:
            out.append((("storage", "count"), f"must not be negative, got {self.storage.count}"))
        out += [(("storage",) + path, msg) for path, msg in _positive(self.storage, "link")]
        return out

    def add_to(self, g: nx.Graph, name: str) -> None:
        groups = math.ceil(self.nodes / self.servers_per_leaf)
        leaves = [[f"rail{r}.leaf{k}" for k in range(groups)] for r in range(self.nics)]
        spines = [f"spine{k}" for k in range(self.spines)]
        g.add_nodes_from(itertools.chain(*leaves, spines), kind="switch", host=None)
        for s in range(self.nodes):
            for rail, nic in enumerate(self.add_server(g, f"s{s}")):
                _link(g, nic, leaves[rail][s // self.servers_per_leaf], self.nic_rate, self.switch_latency)
        for leaf in itertools.chain(*leaves):
            uplink = sum(bw for _, _, bw in g.edges(leaf, data="bandwidth")) / self.oversubscription
            for spine in spines:
                _link(g, leaf, spine, uplink / self.spines, self.switch_latency)
        for k in range(self.storage.count):
            g.add_node(f"storage{k}", kind="storage", host=None)
            _link(g, f"storage{k}", spines[k % self.spines], self.storage.link, self.switch_latency)


class Torus(Spec):
    """A TPU-style slice: chips in a 2D or 3D torus of direct inter-chip (ICI) links.

    Each host is a CPU with `chips_per_host` chips on PCIe and one NIC to the data-center
    network. Google Cloud TPU v6e: 4 ICI ports per chip, 800 GB/s bidirectional ICI per
    chip (= 4 links x 100 GB/s per direction), 2D torus; a 4x4 slice is 4 ct6e-standard-4t
    VMs of 4 chips (https://docs.cloud.google.com/tpu/docs/v6e).
    """

    kind: Literal["torus"]
    dims: list[int]
    wraparound: bool = True  # false: a mesh, no links from the last chip of a row back to the first
    link: BytesPerSecond = 100e9  # per ICI link, per direction
    latency: Seconds = 1e-6  # per ICI hop: "typically around 1us" (jax-ml/scaling-book, sharding.md)
    chips_per_host: int = 4
    pcie: BytesPerSecond = 64e9  # chips attach over PCIe Gen5 (v6e docs); x16 assumed
    nic_rate: BytesPerSecond = 50e9  # 400 Gb/s: half of a v6e host's 4 x 200 Gb/s for a 4-chip VM
    host_memory_bandwidth: BytesPerSecond | None = None  # not published

    def problems(self) -> Problems:
        out = _positive(self, "link", "chips_per_host", "pcie", "nic_rate") + _not_negative(self, "latency")
        out += _bounded(self, "chips_per_host")
        if all(isinstance(d, int) and d > 0 for d in self.dims) and math.prod(self.dims) > limits.DEVICES.value:
            out.append((("dims",), limits.DEVICES.message(f"{math.prod(self.dims):,} chips")))
        if len(self.dims) not in (2, 3):
            out.append((("dims",), f"give 2 or 3 sizes, e.g. [4, 4] or [4, 4, 8]; got {self.dims}"))
        out += [(("dims", i), f"a torus dimension needs at least 2 chips, got {d}")
                for i, d in enumerate(self.dims) if d < 2]
        chips = math.prod(self.dims)
        if not out and chips % self.chips_per_host:
            out.append((("chips_per_host",), f"{chips} chips do not split into hosts of {self.chips_per_host}; "
                                              f"choose a divisor of {chips}"))
        return out

    def add_to(self, g: nx.Graph, name: str) -> None:
        coords = list(itertools.product(*(range(d) for d in self.dims)))
        chip = {c: "chip" + "_".join(map(str, c)) for c in coords}
        for i, c in enumerate(coords):  # hosts take consecutive chips in placement order
            g.add_node(chip[c], kind="accelerator", host=f"h{i // self.chips_per_host}", coord=c)
        for h in range(len(coords) // self.chips_per_host):
            cpu, nic = f"h{h}.cpu", f"h{h}.nic"
            g.add_node(cpu, kind="cpu", host=f"h{h}", memory_bandwidth=self.host_memory_bandwidth)
            g.add_node(nic, kind="nic", host=f"h{h}", rail=0, rate=self.nic_rate)
            _link(g, cpu, nic, self.pcie, self.latency)
            for c in coords[h * self.chips_per_host:(h + 1) * self.chips_per_host]:
                _link(g, chip[c], cpu, self.pcie, self.latency)
        for c in coords:
            for axis, size in enumerate(self.dims):
                if c[axis] + 1 < size or self.wraparound:
                    nxt = c[:axis] + ((c[axis] + 1) % size,) + c[axis + 1:]
                    _link(g, chip[c], chip[nxt], self.link, self.latency)  # size 2: two parallel links


@dataclass(frozen=True)
class TorusGroup:
    """The chips of one tensor-parallel group on a torus, and what its collectives run over:
    `dims` the group's extent along each axis (chips are placed row-major, so a group of tp
    chips fills the last axis first), `wrap` whether each of those axes closes into a ring
    (it does only when the group spans the whole axis of a wraparound torus)."""
    dims: tuple[int, ...]
    wrap: tuple[bool, ...]
    link: float                     # bytes/s per link, per direction
    latency: float                  # s per hop

    def allreduce(self, nbytes):
        """Reduce-scatter then all-gather along each axis in turn (a ring per axis, as XLA runs
        them on a torus): 2 (k - 1) steps of (step latency + bytes / (k x ring bandwidth)) per
        axis of k chips, the bytes shrinking k-fold from one axis to the next. A closed ring
        runs both directions (twice a link's bandwidth, one hop per step); an axis without its
        wraparound link runs a ring over a line: a link's bandwidth, and its closing step
        crosses k - 1 hops."""
        import numpy as np
        size = np.asarray(nbytes, float)
        t = np.zeros_like(size)
        for k, closed in zip(reversed(self.dims), reversed(self.wrap)):
            if k == 1:
                continue
            bandwidth = 2.0 * self.link if closed else self.link
            step = self.latency if closed or k == 2 else (k - 1) * self.latency
            t = t + 2.0 * (k - 1) * (step + size / (k * bandwidth))
            size = size / k
        return t


Build = Annotated[Union[HgxNode, RailLeafSpine, Torus], Field(discriminator="kind")]


def _link(g: nx.Graph, a: str, b: str, bandwidth: float, latency: float) -> None:
    """Join a and b; a second link between the same pair adds capacity (parallel cables)."""
    if g.has_edge(a, b):
        g[a][b]["bandwidth"] += bandwidth
    else:
        g.add_edge(a, b, bandwidth=bandwidth, latency=latency)


def _positive(spec: Spec, *fields: str) -> Problems:
    return [((f,), f"must be positive, got {getattr(spec, f):g}")
            for f in fields if getattr(spec, f) is not None and getattr(spec, f) <= 0]


def _bounded(spec: Spec, *counts: str) -> Problems:
    """Counts of things the graph will hold, at most the device limit: a typo such as 2**64
    CPUs is refused before the graph is built."""
    return [((f,), limits.DEVICES.message(f"{getattr(spec, f):,} {f}"))
            for f in counts if getattr(spec, f) is not None and getattr(spec, f) > limits.DEVICES.value]


def _not_negative(spec: Spec, *fields: str) -> Problems:
    return [((f,), f"must not be negative, got {getattr(spec, f):g}") for f in fields if getattr(spec, f) < 0]


# ---- the topology ----------------------------------------------------------------------


class TopologySpec(Spec):
    """An interconnect graph, written out, built, or both. Run validate_topology before use."""

    name: str
    build: Build | None = None
    nodes: list[TopologyNode] = Field(default_factory=list)
    links: list[TopologyLink] = Field(default_factory=list)
    _graph: nx.Graph | None = PrivateAttr(default=None)
    _built: nx.Graph | None = PrivateAttr(default=None)
    _built_ids: frozenset = PrivateAttr(default=frozenset())
    _nearest: dict = PrivateAttr(default_factory=dict)

    def __eq__(self, other) -> bool:  # the cached graph is not part of the value
        return type(other) is type(self) and self.__dict__ == other.__dict__

    def graph(self) -> nx.Graph:
        """The graph (built once per spec). Raises ValueError if the spec has problems that
        make it unbuildable (unknown link ends, duplicate ids, bad builder parameters)."""
        if self._graph is None:
            problems = _spec_problems(self)
            if problems:
                raise ValueError(f"topology '{self.name}': " + "; ".join(m for _, m in problems))
            g = self._build()  # extended in place: the builder's ids were noted before
            for n in self.nodes:
                g.add_node(n.id, kind=n.kind, host=n.host)
            for link in self.links:
                _link(g, link.a, link.b, link.bandwidth, link.latency)
            _infer_hosts(g)
            _place_accelerators(g, self.name)
            self._graph = g
        return self._graph

    def _build(self) -> nx.Graph:
        """The builder's graph, made once; its node ids are kept to catch explicit duplicates."""
        if self._built is None:
            self._built = nx.Graph(name=self.name)
            if self.build is not None:
                self.build.add_to(self._built, self.name)
            self._built_ids = frozenset(self._built)
        return self._built

    def torus_group(self, tp: int) -> "TorusGroup | None":
        """Where a tensor-parallel group of `tp` chips sits on this topology, when it is a torus
        the group fits in (row-major, the last axis first); None otherwise."""
        b = self.build
        if b is None or b.kind != "torus" or tp < 1 or b.problems():   # a bad torus is reported where topologies are checked
            return None
        dims, left = [], tp
        for size in reversed(b.dims):
            k = math.gcd(size, left) if left < size else size
            dims.append(k)
            left //= k
        if left != 1:
            return None
        dims.reverse()
        return TorusGroup(tuple(dims), tuple(b.wraparound and k == size and size > 1 for k, size in zip(dims, b.dims)),
                          b.link, b.latency)

    def accelerators(self) -> list[str]:
        """Accelerator ids in placement order (built ones first, then explicit ones)."""
        return [n for n, kind in self.graph().nodes(data="kind") if kind == "accelerator"]

    def host_cpu(self, accel: str) -> str:
        """The CPU serving this accelerator: the nearest by hops on the same host."""
        return self._nearest_of(accel, "cpu")

    def nic_of(self, accel: str) -> str:
        """The NIC this accelerator sends through: the nearest by hops on the same host."""
        return self._nearest_of(accel, "nic")

    def scale_up_domain(self, accel: str) -> str | None:
        """Its scale-up switch, or for directly linked chips (a torus) the slice name;
        accelerators in one domain talk over scale-up links. None: it has no scale-up links."""
        return self.graph().nodes[self._check_accelerator(accel)]["domain"]

    def _check_accelerator(self, accel: str) -> str:
        g = self.graph()
        if g.nodes.get(accel, {}).get("kind") != "accelerator":
            raise KeyError(f"'{accel}' is not an accelerator of topology '{self.name}'"
                           + did_you_mean(accel, self.accelerators(), "accelerators"))
        return accel

    def _nearest_of(self, accel: str, kind: str) -> str:
        self._check_accelerator(accel)
        if kind not in self._nearest:
            self._nearest[kind] = _nearest_on_host(self.graph(), kind)
        if accel not in self._nearest[kind]:
            raise ValueError(f"accelerator '{accel}' has no {kind} on its host "
                             f"'{self.graph().nodes[accel]['host']}'")
        return self._nearest[kind][accel]


def _infer_hosts(g: nx.Graph) -> None:
    """Give explicit host-local nodes without a host one: the nodes joined by in-server
    links (all but fabric switches and storage) form a server."""
    if all(d["host"] is not None for _, d in g.nodes(data=True) if d["kind"] in HOST_KINDS):
        return
    local = [n for n, kind in g.nodes(data="kind") if kind in HOST_KINDS]
    fresh = 0
    for part in nx.connected_components(g.subgraph(local)):
        known = [g.nodes[n]["host"] for n in part if g.nodes[n]["host"] is not None]
        if not known:
            known, fresh = [f"host{fresh}"], fresh + 1
        for n in part:
            if g.nodes[n]["host"] is None:
                g.nodes[n]["host"] = known[0]


def _place_accelerators(g: nx.Graph, name: str) -> None:
    """Number accelerators in insertion order and find each one's scale-up domain."""
    accels = [n for n, kind in g.nodes(data="kind") if kind == "accelerator"]
    direct = nx.Graph(g.subgraph(accels).edges)  # chip-to-chip links, as in a torus
    slices = list(nx.connected_components(direct))
    slice_of = {n: name if len(slices) == 1 else f"{name}.slice{k}" for k, part in enumerate(slices) for n in part}
    for i, n in enumerate(accels):
        switch = next((m for m in g[n] if g.nodes[m]["kind"] == "scale-up-switch"), None)
        g.nodes[n].update(index=i, domain=switch or slice_of.get(n))


def _nearest_on_host(g: nx.Graph, kind: str) -> dict[str, str]:
    """For each accelerator, the node of `kind` fewest hops away inside its own host.

    Ties are dealt round-robin among the accelerators that share them, so that GPU i of a
    rail-optimized server gets NIC i although two NICs sit on its PCIe switch."""
    members = defaultdict(list)
    for n, host in g.nodes(data="host"):
        if host is not None:
            members[host].append(n)
    out = {}
    for nodes in members.values():
        sub = g.subgraph(nodes)
        targets = [n for n in nodes if g.nodes[n]["kind"] == kind]
        sharing = defaultdict(list)
        for acc in (n for n in nodes if g.nodes[n]["kind"] == "accelerator"):
            dist = nx.single_source_shortest_path_length(sub, acc)
            reach = [t for t in targets if t in dist]
            if reach:
                best = min(dist[t] for t in reach)
                sharing[tuple(t for t in reach if dist[t] == best)].append(acc)
        for tied, accs in sharing.items():
            for k, acc in enumerate(accs):
                out[acc] = tied[k % len(tied)]
    return out


# ---- validation ------------------------------------------------------------------------


def validate_topology(spec: TopologySpec, accelerators_needed: int = 0) -> Problems:
    """Everything wrong with the topology, as (field path, message); empty when it is usable."""
    problems = _spec_problems(spec)
    if problems:
        return problems
    g = spec.graph()
    problems += _connectivity_problems(g)
    placed = len(spec.accelerators())
    if placed < accelerators_needed:
        problems.append(((), f"the fleet has {accelerators_needed} accelerators but the topology "
                             f"places only {placed}"))
    return problems


def _spec_problems(spec: TopologySpec) -> Problems:
    """Problems that stop the graph being built: bad builder parameters, ids, link ends, rates."""
    if spec.build is None and not spec.nodes:
        return [((), "no nodes: write nodes: and links:, or build: {kind: hgx-node | rail-leaf-spine | torus}")]
    if spec.build is not None:
        out = [(("build",) + path, msg) for path, msg in spec.build.problems()]
        if out:
            return out
    spec._build()
    built = spec._built_ids
    out, seen = [], set()
    for i, node in enumerate(spec.nodes):
        if node.id in built:
            out.append((("nodes", i, "id"), f"duplicate node id '{node.id}': the {spec.build.kind} builder "
                                            f"already makes it; pick another id"))
        elif node.id in seen:
            out.append((("nodes", i, "id"), f"duplicate node id '{node.id}'; node ids must be unique"))
        seen.add(node.id)
    known = built | seen
    for j, link in enumerate(spec.links):
        for end in ("a", "b"):
            name = getattr(link, end)
            if name not in known:
                out.append((("links", j, end), f"unknown node '{name}'" + did_you_mean(name, known, "nodes")))
        if link.a == link.b:
            out.append((("links", j), f"link joins '{link.a}' to itself"))
        if link.bandwidth <= 0:
            out.append((("links", j, "bandwidth"), f"bandwidth must be positive, got {link.bandwidth:g} B/s"))
        if link.latency < 0:
            out.append((("links", j, "latency"), f"latency must not be negative, got {link.latency:g}s"))
    return out


def _connectivity_problems(g: nx.Graph) -> Problems:
    lonely = list(nx.isolates(g))
    parts = sorted(nx.connected_components(g), key=len, reverse=True)
    if len(parts) == 1 and lonely:  # a single node and no links
        return [(("links",), f"node '{lonely[0]}' has no link; a topology needs linked nodes")]
    if len(parts) == 1:
        return []
    cut_off = sorted(parts[1])[:5]
    unlinked = f"; {', '.join(lonely[:5])} {'has' if len(lonely) == 1 else 'have'} no link at all" if lonely else ""
    return [(("links",), f"the graph is disconnected: {len(parts)} separate parts; e.g. {', '.join(cut_off)} "
                         f"cannot reach {sorted(parts[0])[0]}{unlinked}; add links to join them")]


def load_topology(path: str, accelerators_needed: int = 0) -> TopologySpec:
    """Read and check a topology file; raises ScenarioError with file:line for each problem."""
    src = source.load(path)
    spec = validate(TopologySpec, src.data, src)
    problems = validate_topology(spec, accelerators_needed)
    if problems:
        raise ScenarioError(Problem(src.loc_of(p), format_path(p), msg) for p, msg in problems)
    return spec


# ---- summary ---------------------------------------------------------------------------


def summarize_topology(spec: TopologySpec) -> dict:
    """Headline figures: node counts by kind, links, accelerators, servers, hop diameters,
    bisection bandwidth (bytes/s) and, for a rail fabric, per-server scale-out bandwidth."""
    g = spec.graph()
    accels = spec.accelerators()
    out = {
        "name": spec.name,
        "nodes": dict(sorted(Counter(kind for _, kind in g.nodes(data="kind")).items())),
        "links": g.number_of_edges(),
        "accelerators": len(accels),
        "servers": len({host for _, host in g.nodes(data="host") if host is not None}),
        "diameter_hops": accelerator_diameter(g, accels),
        "graph_diameter_hops": nx.diameter(g, usebounds=True) if nx.is_connected(g) else None,
        "bisection_bandwidth": bisection_bandwidth(g, accels),
    }
    if isinstance(spec.build, RailLeafSpine):
        injection = spec.build.nics * spec.build.nic_rate
        out["scale_out_per_server"] = injection
        out["scale_out_per_server_through_spines"] = injection / spec.build.oversubscription
    return out


def accelerator_diameter(g: nx.Graph, accels: list[str]) -> int | None:
    """Most hops between two accelerators (the distance collectives see; host NICs that
    hang off the side would only lengthen the whole-graph diameter)."""
    if not accels or not nx.is_connected(g):
        return None
    wanted = set(accels)
    return max(max(d for n, d in nx.single_source_shortest_path_length(g, a).items() if n in wanted)
               for a in accels)


def bisection_bandwidth(g: nx.Graph, accels: list[str]) -> float:
    """Minimum cut capacity (bytes/s, one direction) between the first and the second half of
    the accelerators in placement order: max flow from a super-source feeding the first
    half to a super-sink fed by the second, each link a pair of opposite arcs."""
    if len(accels) < 2:
        return 0.0
    source, sink = ("bisection", "source"), ("bisection", "sink")  # tuples cannot clash with str ids
    flow = nx.DiGraph()
    for a, b, bw in g.edges(data="bandwidth"):
        flow.add_edge(a, b, capacity=bw)
        flow.add_edge(b, a, capacity=bw)
    half = len(accels) // 2
    flow.add_edges_from((source, a) for a in accels[:half])  # no capacity attribute: unbounded
    flow.add_edges_from((a, sink) for a in accels[half:])
    return nx.maximum_flow_value(flow, source, sink)


# ---- drawing ---------------------------------------------------------------------------

COLORS = {"accelerator": "#76b900", "scale-up-switch": "#1f77b4", "pcie-switch": "#9467bd", "cpu": "#8c564b",
          "nic": "#ff7f0e", "switch": "#d62728", "storage": "#7f7f7f", "server": "#bcbd22"}
# rows inside a server, bottom to top; fabric switches and storage stack above the NICs
ROW = {"scale-up-switch": 0, "accelerator": 1, "pcie-switch": 2, "cpu": 3, "nic": 4, "server": 4}


def draw_topology(spec: TopologySpec, path_png: str, max_nodes: int = 300) -> str:
    """Draw the graph to a PNG coloured by kind: torus chips on their grid, anything else
    in layers (servers side by side, fabric switches above). A layered graph over
    `max_nodes` nodes is summarized: every server but the first is drawn as one node."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on save

    g = spec.graph()
    title = f"{spec.name}: {len(spec.accelerators())} accelerators, {g.number_of_nodes()} nodes"
    if all(g.nodes[a].get("coord") is not None for a in spec.accelerators()):
        pos = _grid_layout(g)
    else:
        if g.number_of_nodes() > max_nodes:
            g = _collapse_servers(g, g.nodes[spec.accelerators()[0]]["host"] if spec.accelerators() else None)
            title += f" (one server expanded, {g.number_of_nodes()} shown)"
        pos = _layered_layout(g)
    xs, ys = zip(*pos.values())
    wide, high = max(xs) - min(xs), max(ys) - min(ys)
    fig = Figure(figsize=(min(30, max(6, 4 + 0.35 * wide)), min(12, max(4, 2 + high))))
    ax = fig.add_subplot()
    top = max((bw for _, _, bw in g.edges(data="bandwidth")), default=1.0)
    for wrap in (False, True):  # torus wraparound links as arcs, so they do not hide the others
        edges = [(a, b, bw) for a, b, bw in g.edges(data="bandwidth") if _wraps(g, a, b) == wrap]
        nx.draw_networkx_edges(g, pos, edgelist=[e[:2] for e in edges], ax=ax, alpha=0.35,
                               width=[0.3 + 2.5 * bw / top for *_, bw in edges],
                               **({"arrows": True, "arrowstyle": "-", "connectionstyle": "arc3,rad=0.25"} if wrap else {}))
    draw_nodes(g, pos, ax)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax.set_axis_off()
    fig.savefig(path_png, dpi=120, bbox_inches="tight")
    return path_png


def draw_nodes(g, pos, ax, size: int = 160, small: int = 40) -> None:
    """The graph's nodes coloured by kind (labelled when there are few of them)."""
    for kind, color in COLORS.items():
        nodes = [n for n, k in g.nodes(data="kind") if k == kind]
        if nodes:
            nx.draw_networkx_nodes(g, pos, nodelist=nodes, node_color=color, label=kind, ax=ax,
                                   node_size=size if g.number_of_nodes() <= 60 else small)
    if g.number_of_nodes() <= 60:
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=6)


def _wraps(g: nx.Graph, a: str, b: str) -> bool:
    ca, cb = g.nodes[a].get("coord"), g.nodes[b].get("coord")
    return ca is not None and cb is not None and sum(abs(x - y) for x, y in zip(ca, cb)) > 1


def _grid_layout(g: nx.Graph) -> dict:
    """Chips at their torus coordinates (z planes side by side); each host's CPU and NIC
    just right of the middle of its chips."""
    coords = {n: c for n, c in g.nodes(data="coord") if c is not None}
    plane = max(c[0] for c in coords.values()) + 2
    pos = {n: (c[0] + (c[2] * plane if len(c) > 2 else 0), c[1]) for n, c in coords.items()}
    chips = defaultdict(list)
    for n in pos:
        chips[g.nodes[n]["host"]].append(pos[n])
    for n, data in g.nodes(data=True):
        if n not in pos and data.get("host") in chips:
            xs, ys = zip(*chips[data["host"]])
            lift = 0.3 if data["kind"] == "nic" else 0.0
            pos[n] = (sum(xs) / len(xs) + 0.4, sum(ys) / len(ys) + lift)
    rest, above = [n for n in g if n not in pos], max(y for _, y in pos.values()) + 1
    pos.update((n, (k, above)) for k, n in enumerate(rest))  # anything else: a row above
    return pos


def _collapse_servers(g: nx.Graph, keep: str) -> nx.Graph:
    """Each server other than `keep` becomes one node of kind 'server'; links into it merge."""
    rep = {n: host if host not in (None, keep) else n for n, host in g.nodes(data="host")}
    h = nx.Graph()
    for n, data in g.nodes(data=True):
        h.add_node(rep[n], **(data if rep[n] == n else {"kind": "server", "host": rep[n]}))
    for a, b, bw in g.edges(data="bandwidth"):
        if rep[a] != rep[b]:
            _link(h, rep[a], rep[b], bw, 0.0)
    return h


def _layered_layout(g: nx.Graph) -> dict:
    """Positions: each server a band as wide as its widest row, its nodes in rows by kind;
    fabric nodes in rows above, by hops from the nearest server node, across all bands."""
    bands = defaultdict(lambda: defaultdict(list))  # host -> row -> nodes
    for n, data in g.nodes(data=True):
        if data.get("host") is not None:
            bands[data["host"]][ROW.get(data["kind"], 2)].append(n)
    pos, x0 = {}, 0.0
    for rows in bands.values():
        wide = max(len(nodes) for nodes in rows.values())
        for row, nodes in rows.items():
            for k, n in enumerate(nodes):
                pos[n] = (x0 + (k + 0.5) * wide / len(nodes), row)
        x0 += wide
    fabric = [n for n in g if n not in pos]
    if fabric:
        hops = nx.multi_source_dijkstra_path_length(g, set(pos), weight=lambda *_: 1) if pos else {}
        layers = defaultdict(list)
        for n in fabric:
            layers[hops.get(n, 1)].append(n)
        x0 = max(x0, max(len(nodes) for nodes in layers.values()))
        for d, nodes in layers.items():
            for k, n in enumerate(nodes):
                pos[n] = ((k + 0.5) * x0 / len(nodes), max(ROW.values()) + d)
    return pos


__all__ = ["TopologySpec", "TopologyNode", "TopologyLink", "HgxNode", "RailLeafSpine", "Torus",
           "validate_topology", "load_topology", "summarize_topology", "draw_topology",
           "bisection_bandwidth", "accelerator_diameter"]
