"""Topology builders: the graphs `build:` generates (an HGX server, a rail-optimized
leaf-spine fabric of such servers, a TPU-style torus), with the helpers they share with the
topology: adding a link, and the checks of their parameters.
"""
from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

import networkx as nx
from pydantic import Field

from ..spec import limits
from ..spec.base import Bytes, BytesPerSecond, Seconds, Spec

Problems = list[tuple[tuple, str]]  # (field path inside the topology, message)


class HgxNode(Spec):
    """One NVIDIA HGX / DGX H100 8-GPU server.

    Defaults follow the NVIDIA DGX H100 user guide (system topology) and H100 datasheet:
    8 GPUs on the NVSwitch fabric (4 NVSwitch chips, modelled as one switch; NVLink 4 gives
    900 GB/s bidirectional = 450 GB/s per direction per GPU); GPUs in pairs behind PCIe Gen5
    switches (x16 = 64 GB/s per direction); 8 ConnectX-7 400 Gb/s NICs, one per GPU on its
    PCIe switch (rail-optimized compute fabric); 2 Xeon Platinum 8480C sockets, each
    8 channels of DDR5-4800 = 8 x 38.4 GB/s = 307.2 GB/s of host memory bandwidth.
    """

    kind: Literal["hgx-node"] = Field(description="the builder")
    gpus: int = Field(default=8, description="GPUs per server")
    scale_up: BytesPerSecond = Field(default=450e9, description="NVLink bandwidth per GPU, per direction")
    # catalog nvidia-h100-sxm scale_up_latency (1.06 us), rounded
    scale_up_latency: Seconds = Field(default=1e-6, description="latency of an NVLink hop")
    pcie_switches: int = Field(default=4, description="PCIe switches per server; the GPUs split evenly over them")
    pcie: BytesPerSecond = Field(default=64e9, description="PCIe bandwidth per link, per direction (Gen5 x16)")
    # coarse, as topologies/hgx-h100-1node.yaml
    pcie_latency: Seconds = Field(default=1e-6, description="latency of a PCIe hop")
    nics: int = Field(default=8, description="NICs per server: one per GPU (rail-optimized) or one per GPU pair")
    nic_rate: BytesPerSecond = Field(default=50e9, description="line rate of each NIC (50 GB/s = 400 Gb/s, "
                                                              "ConnectX-7 NDR)")
    cpus: int = Field(default=2, description="CPU sockets per server")
    host_memory_bandwidth: BytesPerSecond = Field(default=307.2e9, description="host memory bandwidth per CPU "
                                                                               "socket")
    # The host path. A GPUDirect-RDMA NIC moves data between GPU memory and the wire; a
    # host-staged (legacy) one bounces it through host memory, which every such flow then
    # crosses twice, and a CPU core carries each message through the kernel's TCP stack.
    # host_staging_cost: Cai et al., "Understanding Host Network Stack Overheads" (SIGCOMM
    # 2021, www.cs.cornell.edu/~ragarwal/pubs/network-stack.pdf): the Linux stack sustains
    # ~42 Gb/s per core on one long flow with every offload on, so 1 MiB costs ~200 us of a
    # core. nic_message_cost (RDMA verbs per message) is an assumption: set both from your
    # own measurements.
    nic_path: Literal["gpudirect", "host-staged"] = Field(
        default="gpudirect", description="gpudirect: the NIC moves data between GPU memory and the wire; "
                                         "host-staged: data bounces through host memory, a CPU core carrying each "
                                         "message")
    nic_message_size: Bytes = Field(default=1 << 20, description="the messages a flow through a NIC is cut into")
    nic_message_cost: Seconds = Field(default=1e-6, description="NIC time per message (RDMA verbs); assumed, set "
                                                                "it from your measurements")
    host_staging_cost: Seconds = Field(default=200e-6, description="CPU time per message on the host-staged path")
    # The head node runs each replica's engine loop (scheduling, kernel launch). `cpu_speed`
    # is single-thread speed relative to the host behind the catalog's iteration_overhead.
    # Xeon Platinum 8480C, per socket (DGX H100 datasheet: 2 x 56 cores)
    cpu_cores: int = Field(default=56, description="CPU cores per socket, shared by the engines' loops and host "
                                                   "work")
    cpu_speed: float = Field(default=1.0, description="single-thread speed relative to the host behind the engine "
                                                      "presets' host times")

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
    count: int = Field(default=0, description="storage nodes, hung off the spines")
    # 400 Gb/s assumed: set it to your appliance's ports
    link: BytesPerSecond = Field(default=50e9, description="each storage node's link to its spine")


class RailLeafSpine(HgxNode):
    """`nodes` HGX servers on a rail-optimized two-tier fat tree (NVIDIA DGX SuperPOD design).

    NIC i of every server goes to a leaf switch of rail i, `servers_per_leaf` servers a leaf
    (a DGX SuperPOD scalable unit is 32 servers: one leaf per rail per SU); every leaf links
    to every spine with (leaf downlink capacity) / `oversubscription` in all. The defaults
    give the SuperPOD reference architecture's 2-SU size: 64 servers, 512 GPUs, 16 leaf and
    8 spine switches. Storage nodes hang off the spines, for weight loading.
    """

    kind: Literal["rail-leaf-spine"] = Field(description="the builder")
    nodes: int = Field(default=64, description="servers")
    servers_per_leaf: int = Field(default=32, description="servers per leaf switch of each rail (a SuperPOD "
                                                          "scalable unit is 32)")
    spines: int = Field(default=8, description="spine switches; every leaf links to every spine")
    oversubscription: float = Field(default=1.0, description="leaf downlink over uplink capacity (1: "
                                                             "non-blocking)")
    switch_latency: Seconds = Field(default=1e-6, description="per switch hop")
    storage: Storage = Field(default=Storage(), description="storage nodes, for weight loading")

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
        st = self.storage
        storage = _not_negative(st, "count") + _bounded(st, "count") + _positive(st, "link")
        out += [(("storage",) + path, msg) for path, msg in storage]
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

    kind: Literal["torus"] = Field(description="the builder")
    dims: list[int] = Field(description="chips along each axis: 2 or 3 sizes, e.g. [4, 4]")
    wraparound: bool = Field(default=True, description="false: a mesh, no link from the last chip of a row back "
                                                       "to the first")
    link: BytesPerSecond = Field(default=100e9, description="per inter-chip (ICI) link, per direction")
    # "typically around 1us" (jax-ml/scaling-book, sharding.md)
    latency: Seconds = Field(default=1e-6, description="per ICI hop")
    chips_per_host: int = Field(default=4, description="chips per host (a CPU and a NIC)")
    # chips attach over PCIe Gen5 (v6e docs); x16 assumed
    pcie: BytesPerSecond = Field(default=64e9, description="chip-to-host PCIe bandwidth, per direction")
    # 400 Gb/s: half of a v6e host's 4 x 200 Gb/s for a 4-chip VM
    nic_rate: BytesPerSecond = Field(default=50e9, description="each host's NIC line rate")
    # not published
    host_memory_bandwidth: BytesPerSecond | None = Field(default=None, description="recorded on each host's CPU "
                                                                                   "node (no flow crosses it)")

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


Build = Annotated[HgxNode | RailLeafSpine | Torus, Field(discriminator="kind")]


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


__all__ = ["HgxNode", "Storage", "RailLeafSpine", "Torus", "Build", "Problems"]
