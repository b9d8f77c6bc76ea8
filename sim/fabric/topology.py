"""Interconnect topologies: schema, queries, validation and summary (the builders are in
`topology_builders`, the drawing in `topology_drawing`).

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

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import networkx as nx
from pydantic import Field, PrivateAttr

from ..spec import source
from ..spec.base import BytesPerSecond, Seconds, Spec
from ..spec.errors import Problem, ScenarioError, did_you_mean, format_path
from ..spec.validate import validate
from .topology_builders import Build, Problems, RailLeafSpine, _link

NodeKind = Literal["accelerator", "cpu", "host-memory", "nic", "pcie-switch", "scale-up-switch", "switch",
                   "storage"]
HOST_KINDS = {"accelerator", "cpu", "nic", "pcie-switch", "scale-up-switch"}


class TopologyNode(Spec):
    id: str = Field(description="the node's name, used by links, failures and ingress")
    kind: NodeKind = Field(description="what the node is")
    host: str | None = Field(default=None, description="the server it sits in; inferred from in-server links "
                                                       "when left out")


class TopologyLink(Spec):
    a: str = Field(description="one end's node id")
    b: str = Field(description="the other end's node id")
    bandwidth: BytesPerSecond = Field(description="per direction (links are full duplex)")
    latency: Seconds = Field(default=0.0, description="per traversal")


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
        for k, closed in zip(reversed(self.dims), reversed(self.wrap), strict=True):
            if k == 1:
                continue
            bandwidth = 2.0 * self.link if closed else self.link
            step = self.latency if closed or k == 2 else (k - 1) * self.latency
            t = t + 2.0 * (k - 1) * (step + size / (k * bandwidth))
            size = size / k
        return t


# ---- the topology ----------------------------------------------------------------------


class TopologySpec(Spec):
    """An interconnect graph, written out (`nodes:`, `links:`), built (`build:`), or both:
    explicit nodes and links are added on top of a built graph.

    Run validate_topology before use."""

    name: str = Field(description="the topology's name, in messages and drawings")
    build: Build | None = Field(default=None, description="a generated graph: one server, a leaf-spine fabric of "
                                                          "servers, or a torus")
    nodes: list[TopologyNode] = Field(default_factory=list, description="nodes added to the built graph (or the "
                                                                        "whole graph)")
    links: list[TopologyLink] = Field(default_factory=list, description="links added to the built graph")
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

    def torus_group(self, tp: int) -> TorusGroup | None:
        """Where a tensor-parallel group of `tp` chips sits on this topology, when it is a torus
        the group fits in (row-major, the last axis first); None otherwise."""
        b = self.build
        # a bad torus is reported where topologies are checked
        if b is None or b.kind != "torus" or tp < 1 or b.problems():
            return None
        dims, left = [], tp
        for size in reversed(b.dims):
            k = math.gcd(size, left) if left < size else size
            dims.append(k)
            left //= k
        if left != 1:
            return None
        dims.reverse()
        wrap = tuple(b.wraparound and k == size and size > 1 for k, size in zip(dims, b.dims, strict=True))
        return TorusGroup(tuple(dims), wrap, b.link, b.latency)

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


__all__ = ["TopologySpec", "TopologyNode", "TopologyLink",
           "validate_topology", "load_topology", "summarize_topology",
           "bisection_bandwidth", "accelerator_diameter"]
