"""The fabric: transfers as flows over routed paths, sharing links max-min fairly.

A flow is a transfer of some bytes from one node of the topology graph to another. It takes
one of the shortest paths (by hops; among equal-cost paths, ECMP picks one by hashing the
flow's id), crosses directed links (every cable is full duplex), and moves at the rate
`kernels.maxmin_rates` gives it among the flows active at the same time. Rates change only
when a flow starts or ends, so the fabric sleeps from one such event to the next. A flow is
delivered when its last byte has crossed its bottleneck plus the path's latency.

Collectives (`ring_allreduce`, `tree_allreduce`) are made of flows, so they share the
fabric with everything else and contention shows in their time.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import simpy

from . import kernels
from .serving.clock import at

MAX_ECMP_PATHS = 16


@dataclass
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


@dataclass
class LinkLog:
    """Bytes carried per directed link per time bin (columns grow as time advances)."""

    bin_width: float
    n_links: int
    bins: list = field(default_factory=list)

    def add(self, link_rate: np.ndarray, t0: float, t1: float) -> None:
        if t1 <= t0:
            return
        b0, b1 = int(t0 // self.bin_width), int(t1 // self.bin_width)
        while len(self.bins) <= b1:
            self.bins.append(np.zeros(self.n_links))
        for b in range(b0, b1 + 1):
            overlap = min(t1, (b + 1) * self.bin_width) - max(t0, b * self.bin_width)
            if overlap > 0:
                self.bins[b] += link_rate * overlap


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
        # a flow through a NIC moves message by message, each paying the NIC's per-message
        # cost (and on a host-staged NIC the CPU's): its rate is at most M / (M / rate + cost)
        self.link_flow_cap = np.full(len(cap), math.inf)
        for l, (u, v) in enumerate(zip(self.src, self.dst)):
            for node in (u, v):
                attrs = graph.nodes[node]
                if attrs.get("kind") == "nic" and "message_size" in attrs:
                    m = float(attrs["message_size"])
                    cost = float(attrs["message_cost"])
                    if attrs.get("path") == "host-staged":
                        cost += float(attrs["staging_cost"])
                    per_flow = m / (m / float(attrs["rate"]) + cost) if cost > 0 else math.inf
                    self.link_flow_cap[l] = min(self.link_flow_cap[l], per_flow)
        self._cpu_of: dict = {}
        self.active: dict[int, Flow] = {}
        self.bytes = np.zeros(len(cap))       # bytes carried per directed link, whole run
        self.log = LinkLog(bin_width, len(cap))
        self._paths: dict[tuple, list[np.ndarray]] = {}
        self._next_id = 0
        self._last = env.now
        self._generation = 0
        self.flows_done = 0
        self.bytes_delivered = 0.0

    # ---- routing ----------------------------------------------------------------------
    def paths(self, a, b) -> list[np.ndarray]:
        """Equal-cost shortest paths from a to b, as arrays of directed link indices."""
        key = (a, b)
        if key not in self._paths:
            found = []
            for nodes in nx.all_shortest_paths(self.graph, a, b):
                found.append(np.array([self.link_index[(u, v)] for u, v in zip(nodes, nodes[1:])], np.int64))
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
        options = self.paths(a, b)
        links = options[zlib.crc32(f"{a}>{b}#{flow_id}".encode()) % len(options)]
        src_cpu = self._staging_cpu(a, links)
        dst_cpu = self._staging_cpu(b, links)
        if src_cpu is None and dst_cpu is None:
            return links
        hops, here = [], a
        for cpu in (src_cpu, dst_cpu):
            if cpu is not None:
                hops += [self.route(here, cpu, flow_id), self._memory_loop(cpu)]
                here = cpu
        hops.append(self.route(here, b, flow_id) if here != b else np.zeros(0, np.int64))
        return np.concatenate(hops)

    def _staging_cpu(self, node, links: np.ndarray):
        """The CPU that stages `node`'s traffic, if the path crosses a host-staged NIC of its server."""
        attrs = self.graph.nodes[node]
        if attrs.get("kind") != "accelerator":
            return None
        host = attrs.get("host")
        for l in links:
            for end in (self.src[l], self.dst[l]):
                e = self.graph.nodes[end]
                if e.get("kind") == "nic" and e.get("host") == host and e.get("path") == "host-staged":
                    return self._nearest_cpu(node)
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
        links = self.route(a, b, fid)
        cap = min(cap, float(self.link_flow_cap[links].min())) if len(links) else cap
        flow = Flow(fid, links, float(self.latency[links].sum()), float(nbytes), float(nbytes), done, cap,
                    tag=tag, started=self.env.now)
        if nbytes <= 0:
            at(self.env, self.env.now + flow.latency).callbacks.append(lambda _: done.succeed(0.0))
            return done
        self.active[fid] = flow
        self._reschedule()
        return done

    def _advance(self) -> None:
        """Move every active flow forward to now at its current rate."""
        now = self.env.now
        dt = now - self._last
        if dt > 0 and self.active:
            link_rate = np.zeros(len(self.capacity))
            for f in self.active.values():
                sent = f.rate * dt
                f.remaining -= sent
                link_rate[f.links] += f.rate
            self.bytes += link_rate * dt
            self.log.add(link_rate, self._last, now)
        self._last = now

    def _reschedule(self) -> None:
        """Recompute rates and set a timer for the next flow to finish."""
        flows = list(self.active.values())
        self._generation += 1
        if not flows:
            return
        ptr = np.zeros(len(flows) + 1, np.int64)
        for i, f in enumerate(flows):
            ptr[i + 1] = ptr[i] + len(f.links)
        links = np.concatenate([f.links for f in flows])
        caps = np.array([f.cap for f in flows])
        rates = kernels.maxmin_rates(self.capacity, ptr, links, caps)
        soonest = math.inf
        for f, r in zip(flows, rates):
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
            at(self.env, self.env.now + f.latency).callbacks.append(
                lambda _, f=f: f.done.succeed(self.env.now - f.started))
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
    def link_bytes(self) -> np.ndarray:
        """Bytes carried per time bin (rows) and directed link (columns), up to now."""
        self._advance()
        if not self.log.bins:
            return np.zeros((0, len(self.capacity)))
        return np.vstack(self.log.bins)

    def link_frame(self):
        """Per directed link and time bin: bytes carried and utilization, links that carried any."""
        import pandas as pd
        carried = self.link_bytes()
        w = self.log.bin_width
        b, l = np.nonzero(carried > 0)
        return pd.DataFrame({
            "time": b * w,
            "src": [str(self.src[i]) for i in l],
            "dst": [str(self.dst[i]) for i in l],
            "bytes": carried[b, l],
            "utilization": carried[b, l] / (self.capacity[l] * w),
        })
