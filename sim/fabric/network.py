"""The fabric: transfers as flows over routed paths, sharing links max-min fairly.

A flow is a transfer of some bytes from one node of the topology graph to another. It takes
one of the shortest paths (by hops; among equal-cost paths, ECMP picks one by hashing the
flow's id), crosses directed links (every cable is full duplex), and moves at the rate
`fair_share.maxmin_rates` gives it among the flows active at the same time. Rates change only
when a flow starts or ends, so the fabric sleeps from one such event to the next. A flow is
delivered when its last byte has crossed its bottleneck plus the path's latency.

Collectives (`ring_allreduce`, `tree_allreduce`) are made of flows, so they share the
fabric with everything else and contention shows in their time.

Links fail and are repaired (`set_link`): routes are then taken over what remains, flows
whose path crossed the failed cable continue, with the bytes they have left, on a shortest
path that avoids it, and flows left with no path at all wait until a repair gives them one.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import networkx as nx
import numpy as np
import simpy

from ..core.clock import at
from ..timing import fair_share
from .link_log import LinkLog
from .shortest_paths import paths_from_predecessors

MAX_ECMP_PATHS = 16


@dataclass(slots=True)
class Flow:
    id: int
    links: np.ndarray          # directed link indices along the path
    latency: float             # sum of the path's link latencies
    remaining: float           # bytes still to send
    size: float
    done: simpy.Event
    cap: float = math.inf      # the flow's own rate limit (an endpoint), bytes/s
    rate: float = 0.0
    tag: str = ""
    started: float = 0.0
    narrowest: float = math.inf  # capacity of its narrowest link
    route: int = 0               # route id (Fabric.route_links)
    a: object = None             # endpoints, to route it again when a link on its path fails
    b: object = None
    own_cap: float = math.inf    # the cap it was sent with (before its route's NIC caps)


class Fabric:
    def __init__(self, env: simpy.Environment, graph: nx.Graph, bin_width: float = 1.0):
        self.env = env
        self.graph = graph
        self.src: list = []
        self.dst: list = []
        cap, lat = [], []
        self.link_index: dict[tuple, int] = {}
        for a, b, data in graph.edges(data=True):
            for u, v in ((a, b), (b, a)):
                self.link_index[(u, v)] = len(cap)
                self.src.append(u)
                self.dst.append(v)
                cap.append(float(data["bandwidth"]))
                lat.append(float(data.get("latency", 0.0)))
        self.capacity = np.asarray(cap)
        self.latency = np.asarray(lat)
        # what flows are routed over and share: the topology less failed cables
        self.routing = graph
        self.live_capacity = self.capacity.copy()
        self.failed: set[frozenset] = set()
        self.stranded: list[Flow] = []      # flows no path serves while cables are down
        # a flow through a NIC moves message by message, each paying the NIC's per-message
        # cost (and on a host-staged NIC the CPU's): its rate is at most M / (M / rate + cost)
        self.link_flow_cap = np.full(len(cap), math.inf)
        for link, (u, v) in enumerate(zip(self.src, self.dst, strict=True)):
            for node in (u, v):
                attrs = graph.nodes[node]
                if attrs.get("kind") == "nic" and "message_size" in attrs:
                    m = float(attrs["message_size"])
                    cost = float(attrs["message_cost"])
                    if attrs.get("path") == "host-staged":
                        cost += float(attrs["staging_cost"])
                    per_flow = m / (m / float(attrs["rate"]) + cost) if cost > 0 else math.inf
                    self.link_flow_cap[link] = min(self.link_flow_cap[link], per_flow)
        self._cpu_of: dict = {}
        # host-staged routes: route id -> [(server, CPU seconds per byte)]; and the CPU seconds
        # each server has spent staging so far (what its head node shares its cores with)
        self.staging_of_route: dict[int, list] = {}
        self.staging_seconds: dict = {}
        self.active: dict[int, Flow] = {}
        self.route_links: list[np.ndarray] = []
        self.log = LinkLog(bin_width, len(cap), self.route_links)
        self._paths: dict[tuple, list[np.ndarray]] = {}
        self._pred: dict = {}                 # BFS predecessors from a node
        self._routes: dict[tuple, np.ndarray] = {}
        self._next_id = 0
        self._last = env.now
        self._generation = 0
        self.flows_done = 0
        self.bytes_delivered = 0.0
        # per delivered flow (started, delivered, src, dst, bytes, tag), for `dcsim run --trace`;
        # None (the default) keeps nothing, so untraced runs pay one test per flow
        self.flow_log: list | None = None

    # ---- routing ----------------------------------------------------------------------
    def paths(self, a, b) -> list[np.ndarray]:
        """Equal-cost shortest paths from a to b, as arrays of directed link indices.

        One breadth-first search per node serves every path from it; a pair's paths are found
        from its lesser endpoint (cables are full duplex, so b to a is a to b reversed), so a
        thousand servers answering one front end cost one search, not a thousand."""
        key = (a, b)
        if key not in self._paths:
            src, dst = (a, b) if str(a) <= str(b) else (b, a)
            if src not in self._pred:
                self._pred[src] = nx.predecessor(self.routing, src)
            found = []
            for nodes in paths_from_predecessors(src, dst, self._pred[src]) if dst in self._pred[src] else ():
                if src != a:
                    nodes = nodes[::-1]
                found.append(np.array([self.link_index[(u, v)] for u, v in zip(nodes, nodes[1:], strict=False)],
                                      np.int64))
                if len(found) == MAX_ECMP_PATHS:
                    break
            self._paths[key] = found
        return self._paths[key]

    def path_latency(self, a, b) -> float:
        """Latency of the path flow 0 from a to b takes."""
        return float(self.latency[self.route(a, b, 0)].sum())

    def route(self, a, b, flow_id: int) -> np.ndarray:
        """The links a flow takes: one of the shortest paths (ECMP by the flow's id); a flow
        that leaves or enters an accelerator's server through a host-staged NIC goes through
        that server's CPU and host memory on the way."""
        return self._route(a, b, flow_id)[0]

    def _route(self, a, b, flow_id: int) -> tuple:
        """The route (links, latency, the flow's rate cap, narrowest link capacity)."""
        options = self.paths(a, b)
        if not options:
            raise nx.NetworkXNoPath(f"no path from {a} to {b} while cables are down")
        choice = zlib.crc32(f"{a}>{b}#{flow_id}".encode()) % len(options)
        key = (a, b, choice)
        if key not in self._routes:
            links, staging = self._staged(a, b, options[choice], flow_id)
            if staging:
                self.staging_of_route[len(self.route_links)] = staging
            any_links = len(links) > 0
            self._routes[key] = (links, float(self.latency[links].sum()),
                                 float(self.link_flow_cap[links].min()) if any_links else math.inf,
                                 float(self.live_capacity[links].min()) if any_links else math.inf,
                                 len(self.route_links))
            self.route_links.append(links)
        return self._routes[key]

    def _staged(self, a, b, links: np.ndarray, flow_id: int) -> tuple[np.ndarray, list]:
        """The links with the host-memory detours, and [(server, CPU seconds per byte)] for
        each server whose CPU stages the flow."""
        stagers = [self._staging_cpu(a, links), self._staging_cpu(b, links)]
        if stagers == [None, None]:
            return links, []
        hops, here, staging = [], a, []
        for stager in stagers:
            if stager is not None:
                cpu, nic = stager
                hops += [self.route(here, cpu, flow_id), self._memory_loop(cpu)]
                here = cpu
                staging.append((nic["host"], float(nic["staging_cost"]) / float(nic["message_size"])))
        hops.append(self.route(here, b, flow_id) if here != b else np.zeros(0, np.int64))
        return np.concatenate(hops), staging

    def _staging_cpu(self, node, links: np.ndarray):
        """(CPU, NIC attributes) staging `node`'s traffic, if the path crosses a host-staged NIC
        of its server."""
        attrs = self.graph.nodes[node]
        if attrs.get("kind") != "accelerator":
            return None
        host = attrs.get("host")
        for link in links:
            for end in (self.src[link], self.dst[link]):
                e = self.graph.nodes[end]
                if e.get("kind") == "nic" and e.get("host") == host and e.get("path") == "host-staged":
                    return self._nearest_cpu(node), e
        return None

    def _nearest_cpu(self, node):
        if node not in self._cpu_of:
            host = self.graph.nodes[node].get("host")
            cpus = [n for n, d in self.graph.nodes(data=True) if d.get("kind") == "cpu" and d.get("host") == host]
            self._cpu_of[node] = min(cpus, key=lambda c: nx.shortest_path_length(self.graph, node, c))
        return self._cpu_of[node]

    def _memory_loop(self, cpu) -> np.ndarray:
        """CPU -> host memory -> CPU: the bounce buffer's write and read."""
        mem = f"{cpu}.mem"
        return np.array([self.link_index[(cpu, mem)], self.link_index[(mem, cpu)]], np.int64)

    # ---- transfers ------------------------------------------------------------------------
    def transfer(self, a, b, nbytes: float, tag: str = "", cap: float = math.inf) -> simpy.Event:
        """Send `nbytes` from node a to node b; the event fires when they have arrived."""
        self._advance()
        fid = self._next_id
        self._next_id += 1
        done = self.env.event()
        if a == b:
            done.succeed(0.0)
            return done
        flow = Flow(fid, np.zeros(0, np.int64), 0.0, float(nbytes), float(nbytes), done, cap, tag=tag,
                    started=self.env.now, a=a, b=b, own_cap=cap)
        if not self._put_on_route(flow):
            self.stranded.append(flow)
            return done
        if nbytes <= 0:
            at(self.env, self.env.now + flow.latency, 0.0, done)
            return done
        self.active[fid] = flow
        self._reschedule()
        return done

    def _put_on_route(self, flow: Flow) -> bool:
        """Route `flow` over the cables that work now; False when none connects its ends."""
        try:
            links, latency, flow_cap, narrowest, route = self._route(flow.a, flow.b, flow.id)
        except nx.NetworkXNoPath:
            return False
        flow.links, flow.latency, flow.narrowest, flow.route = links, latency, narrowest, route
        flow.cap = min(flow.own_cap, flow_cap)
        return True

    def set_link(self, a, b, up: bool) -> None:
        """The cable between a and b (both directions) fails (up=False) or is repaired."""
        key = frozenset((a, b))
        if up == (key not in self.failed):
            return
        self._advance()
        if self.routing is self.graph:
            self.routing = self.graph.copy()
        if up:
            self.failed.discard(key)
            self.routing.add_edge(a, b, **self.graph.edges[a, b])
        else:
            self.failed.add(key)
            self.routing.remove_edge(a, b)
        for link in (self.link_index[(a, b)], self.link_index[(b, a)]):
            self.live_capacity[link] = self.capacity[link] if up else 0.0
        self._paths.clear()
        self._pred.clear()
        self._routes.clear()
        if not up:   # flows over the failed cable move to another path, or wait for one
            for f in [f for f in self.active.values() if (self.live_capacity[f.links] == 0).any()]:
                if not self._put_on_route(f):
                    del self.active[f.id]
                    self.stranded.append(f)
        else:        # a repair may give stranded flows a path
            waiting, self.stranded = self.stranded, []
            for f in waiting:
                if not self._put_on_route(f):
                    self.stranded.append(f)
                elif f.remaining <= 0:
                    at(self.env, self.env.now + f.latency, 0.0, f.done)
                else:
                    self.active[f.id] = f
        self._reschedule()

    def _advance(self) -> None:
        """Move every active flow forward to now at its current rate."""
        now = self.env.now
        dt = now - self._last
        if dt > 0 and self.active:
            for f in self.active.values():
                f.remaining -= f.rate * dt
            if self.staging_of_route:
                self._count_staging(dt)
            self.log.add(self.active.values(), self._last, now)
        self._last = now

    def _count_staging(self, dt: float) -> None:
        seconds = self.staging_seconds
        for f in self.active.values():
            for host, per_byte in self.staging_of_route.get(f.route, ()):
                seconds[host] = seconds.get(host, 0.0) + f.rate * dt * per_byte

    def staging_cpu_seconds(self, host) -> float:
        """CPU seconds `host` has spent staging transfers through host memory, up to now."""
        self._advance()
        return self.staging_seconds.get(host, 0.0)

    def _reschedule(self) -> None:
        """Recompute rates and set a timer for the next flow to finish."""
        flows = list(self.active.values())
        self._generation += 1
        if not flows:
            return
        if len(flows) == 1:  # alone on its path: its narrowest link (or its own cap)
            f = flows[0]
            rates = [min(f.narrowest, f.cap) if len(f.links) else 0.0]
        else:
            ptr = np.zeros(len(flows) + 1, np.int64)
            for i, f in enumerate(flows):
                ptr[i + 1] = ptr[i] + len(f.links)
            links = np.concatenate([f.links for f in flows])
            caps = np.array([f.cap for f in flows])
            rates = fair_share.maxmin_rates(self.live_capacity, ptr, links, caps)
        soonest = math.inf
        for f, r in zip(flows, rates, strict=True):
            f.rate = r
            if r > 0:
                soonest = min(soonest, f.remaining / r)
        if soonest < math.inf:
            gen = self._generation
            at(self.env, self.env.now + max(soonest, 0.0)).callbacks.append(lambda _: self._on_timer(gen))

    def _on_timer(self, generation: int) -> None:
        if generation != self._generation:
            return  # rates changed since this timer was set
        self._advance()
        finished = [f for f in self.active.values() if f.remaining <= 1e-9 * max(1.0, f.rate)]
        if not finished:  # float rounding left a sliver: finish the closest flow
            finished = [min(self.active.values(), key=lambda f: f.remaining / max(f.rate, 1e-300))]
        for f in finished:
            del self.active[f.id]
            self.flows_done += 1
            self.bytes_delivered += f.size
            when = self.env.now + f.latency
            if self.flow_log is not None:
                self.flow_log.append((f.started, when, f.a, f.b, f.size, f.tag))
            at(self.env, when, max(when, self.env.now) - f.started, f.done)
        self._reschedule()

    # ---- collectives ------------------------------------------------------------------
    def ring_allreduce(self, nodes: list, nbytes: float, tag: str = "allreduce"):
        """Ring all-reduce of `nbytes` over `nodes` (a SimPy process): 2(n-1) steps in which
        every node sends a 1/n chunk to the next, all at once."""
        n = len(nodes)
        if n <= 1:
            return
        chunk = nbytes / n
        for _ in range(2 * (n - 1)):
            yield self.env.all_of([self.transfer(nodes[i], nodes[(i + 1) % n], chunk, tag) for i in range(n)])

    def tree_allreduce(self, nodes: list, nbytes: float, tag: str = "allreduce"):
        """Binary-tree all-reduce (a SimPy process): reduce up the tree, then broadcast down,
        whole buffers, ceil(log2 n) levels each way."""
        n = len(nodes)
        if n <= 1:
            return
        levels = []
        step = 1
        while step < n:
            levels.append([(i + step, i) for i in range(0, n, 2 * step) if i + step < n])
            step *= 2
        for pairs in levels:  # children send to parents
            yield self.env.all_of([self.transfer(nodes[c], nodes[p], nbytes, tag) for c, p in pairs])
        for pairs in reversed(levels):  # parents send back down
            yield self.env.all_of([self.transfer(nodes[p], nodes[c], nbytes, tag) for c, p in pairs])

    # ---- results ------------------------------------------------------------------------
    @property
    def bytes(self) -> np.ndarray:
        """Bytes carried per directed link over the whole run, up to now."""
        _, links, carried = self.link_usage()
        return np.bincount(links, weights=carried, minlength=len(self.capacity))

    def link_bytes(self) -> np.ndarray:
        """Bytes carried per time bin (rows) and directed link (columns), up to now."""
        bins, links, carried = self.link_usage()
        out = np.zeros((int(bins.max()) + 1 if len(bins) else 0, len(self.capacity)))
        out[bins, links] = carried
        return out

    def link_usage(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time bin, directed link, bytes carried) for every link and bin that carried any."""
        self._advance()
        return self.log.sparse()

    def link_frame(self):
        """Per directed link and time bin: bytes carried and utilization, links that carried any."""
        import pandas as pd
        b, links, carried = self.link_usage()
        w = self.log.bin_width
        order = np.lexsort((links, b))
        b, links, carried = b[order], links[order], carried[order]
        return pd.DataFrame({
            "time": b * w,
            "src": [str(self.src[i]) for i in links],
            "dst": [str(self.dst[i]) for i in links],
            "bytes": carried,
            "utilization": carried / (self.capacity[links] * w),
        })
