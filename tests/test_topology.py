"""Topology builders, queries, validation messages, summary figures and drawing."""
from __future__ import annotations

import glob
import os
import time
from collections import Counter

import networkx as nx
import pytest
import yaml
from pydantic import ValidationError

from sim import catalog
from sim.fabric.topology import TopologySpec, load_topology, summarize_topology, validate_topology
from sim.fabric.topology_drawing import draw_topology
from sim.scenario import load_scenario
from sim.spec import units
from sim.spec.errors import ScenarioError, format_path
from tests.conftest import ROOT

TOPOLOGIES = os.path.join(ROOT, "topologies")
NIC = 400e9 / 8  # 400 Gb/s in bytes/s


def spec(**fields) -> TopologySpec:
    return TopologySpec.model_validate({"name": "t", **fields})


def kinds(s: TopologySpec) -> Counter:
    return Counter(kind for _, kind in s.graph().nodes(data="kind"))


def messages(s: TopologySpec, needed: int = 0) -> list[str]:
    return [f"{format_path(path)}: {msg}" for path, msg in validate_topology(s, needed)]


def shipped(name: str) -> TopologySpec:
    return load_topology(os.path.join(TOPOLOGIES, name))


# ---- builders ------------------------------------------------------------------------


def test_hgx_node_has_gpus_nvswitch_pcie_nics_cpus():
    s = spec(build={"kind": "hgx-node"})
    assert kinds(s) == {"accelerator": 8, "scale-up-switch": 1, "pcie-switch": 4, "nic": 8, "cpu": 2,
                        "host-memory": 2}
    g = s.graph()
    assert g.number_of_edges() == 8 + 8 + 8 + 4 + 1 + 2  # NVLink, GPU-PCIe, NIC-PCIe, PCIe-CPU, CPU-CPU, CPU-memory
    assert nx.is_connected(g) and validate_topology(s, 8) == []
    gpus = s.accelerators()
    assert [g.nodes[a]["index"] for a in gpus] == list(range(8))
    assert [s.nic_of(a) for a in gpus] == [f"s0.nic{i}" for i in range(8)]  # rail-optimized: GPU i -> NIC i
    assert [s.host_cpu(a) for a in gpus] == ["s0.cpu0"] * 4 + ["s0.cpu1"] * 4
    assert {s.scale_up_domain(a) for a in gpus} == {"s0.nvswitch"}
    assert g["s0.gpu0"]["s0.nvswitch"]["bandwidth"] == 450e9
    assert g.nodes["s0.cpu0"]["memory_bandwidth"] == pytest.approx(307.2e9)
    assert all(g.nodes[n]["host"] == "s0" for n in g)
    assert s == spec(build={"kind": "hgx-node"})  # the cached graph is not part of the value


def test_hgx_node_with_a_nic_per_gpu_pair():
    s = spec(build={"kind": "hgx-node", "nics": 4})
    assert kinds(s)["nic"] == 4
    assert [s.nic_of(a) for a in s.accelerators()] == [f"s0.nic{i // 2}" for i in range(8)]


def test_rail_fabric_counts_and_wiring():
    start = time.perf_counter()
    s = shipped("rail-64x8-h100.yaml")
    g = s.graph()
    assert time.perf_counter() - start < 1.0
    assert kinds(s) == {"accelerator": 512, "nic": 512, "switch": 16 + 8, "scale-up-switch": 64,
                        "pcie-switch": 256, "cpu": 128, "host-memory": 128, "storage": 4}
    assert nx.is_connected(g)
    assert s.accelerators()[:2] == ["s0.gpu0", "s0.gpu1"] and s.accelerators()[-1] == "s63.gpu7"
    leaves = [n for n in g if n.startswith("rail")]
    spines = [n for n in g if n.startswith("spine")]
    assert len(leaves) == 16 and len(spines) == 8
    for server in range(64):  # NIC r of every server on a leaf of rail r, its SU's leaf
        for rail in range(8):
            assert g.has_edge(f"s{server}.nic{rail}", f"rail{rail}.leaf{server // 32}")
    for leaf in leaves:  # non-blocking: uplink capacity = downlink capacity
        down = sum(bw for _, m, bw in g.edges(leaf, data="bandwidth") if g.nodes[m]["kind"] == "nic")
        up = sum(bw for _, m, bw in g.edges(leaf, data="bandwidth") if m in spines)
        assert down == pytest.approx(32 * NIC) and up == pytest.approx(down)
    assert s.nic_of("s5.gpu3") == "s5.nic3" and s.host_cpu("s5.gpu6") == "s5.cpu1"
    assert s.scale_up_domain("s5.gpu3") == "s5.nvswitch"
    assert all(g.nodes[n]["host"] is None for n in leaves + spines + ["storage0"])


def test_bisection_of_the_rail_fabric():
    # first half of the GPUs = servers 0-31 (one SU, on the leaves of group 0): the cut is
    # either their 256 NICs or those leaves' uplinks, both 32 servers x 8 NICs x 50 GB/s
    full = summarize_topology(shipped("rail-64x8-h100.yaml"))
    assert full["bisection_bandwidth"] == pytest.approx(32 * 8 * NIC)
    assert full["scale_out_per_server"] == pytest.approx(8 * NIC)
    assert full["servers"] == 64 and full["accelerators"] == 512 and full["diameter_hops"] == 8
    tapered = summarize_topology(shipped("rail-64x8-h100-oversub4.yaml"))
    assert tapered["bisection_bandwidth"] == pytest.approx(32 * 8 * NIC / 4)
    assert tapered["scale_out_per_server_through_spines"] == pytest.approx(8 * NIC / 4)


def test_torus_4x4():
    s = shipped("tpu-v6e-4x4.yaml")
    g = s.graph()
    assert kinds(s) == {"accelerator": 16, "cpu": 4, "nic": 4}
    chips = s.accelerators()
    assert all(sum(g.nodes[m]["kind"] == "accelerator" for m in g[c]) == 4 for c in chips)
    summary = summarize_topology(s)
    assert summary["diameter_hops"] == 4 and summary["servers"] == 4
    assert summary["bisection_bandwidth"] == pytest.approx(8 * 100e9)  # 4 links + 4 wraparound links
    assert {s.scale_up_domain(c) for c in chips} == {"tpu-v6e-4x4"}
    assert s.host_cpu("chip0_3") == "h0.cpu" and s.host_cpu("chip1_0") == "h1.cpu"
    assert s.nic_of("chip3_3") == "h3.nic"


def test_torus_link_rate_matches_the_catalog_and_pod_bisection():
    # 4 ICI ports per v6e chip: the per-link rate times 4 is the catalog's per-chip figure
    link = shipped("tpu-v6e-4x4.yaml").build.link
    per_chip = units.parse_bandwidth(catalog.device_entries()["google-tpu-v6e"]["scale_up_bandwidth"])
    assert 4 * link == pytest.approx(per_chip)
    # a full 16x16 pod: Google publishes 3.2 TB/s of bisection bandwidth
    pod = spec(build={"kind": "torus", "dims": [16, 16], "link": link})
    assert summarize_topology(pod)["bisection_bandwidth"] == pytest.approx(3.2e12)


def test_torus_3d_and_mesh():
    cube = spec(build={"kind": "torus", "dims": [2, 2, 2], "chips_per_host": 8})
    g = cube.graph()
    assert g["chip0_0_0"]["chip1_0_0"]["bandwidth"] == 2 * 100e9  # size 2: link and wraparound both
    mesh = spec(build={"kind": "torus", "dims": [4, 4], "wraparound": False})
    assert nx.diameter(mesh.graph().subgraph(mesh.accelerators())) == 6  # over ICI links alone
    assert summarize_topology(mesh)["diameter_hops"] == 5  # chip0_0 -> h0.cpu -> chip0_3 -> ... chip3_3


def test_explicit_nodes_and_links_on_top_of_a_build():
    s = spec(build={"kind": "hgx-node"}, nodes=[{"id": "nas", "kind": "storage"}],
             links=[{"a": "nas", "b": "s0.nic0", "bandwidth": "400Gb/s", "latency": "2us"}])
    assert validate_topology(s) == [] and kinds(s)["storage"] == 1
    assert s.graph()["nas"]["s0.nic0"]["latency"] == pytest.approx(2e-6)


def test_explicit_graph_gets_hosts_inferred():
    s = shipped("hgx-h100-1node.yaml")
    assert len(s.accelerators()) == 8
    assert {h for _, h in s.graph().nodes(data="host")} == {"host0"}
    assert [s.nic_of(a) for a in s.accelerators()] == [f"nic{i // 2}" for i in range(8)]
    assert s.host_cpu("gpu5") == "cpu1" and s.scale_up_domain("gpu5") == "nvswitch"


def test_queries_name_unknown_accelerators():
    s = spec(build={"kind": "hgx-node"})
    with pytest.raises(KeyError, match="did you mean 's0.gpu1'"):
        s.nic_of("s0.gpu11")


# ---- validation messages --------------------------------------------------------------

G = [{"id": "g0", "kind": "accelerator"}, {"id": "g1", "kind": "accelerator"},
     {"id": "sw", "kind": "scale-up-switch"}]


def test_unknown_node_in_a_link():
    s = spec(nodes=G, links=[{"a": "g0", "b": "sww", "bandwidth": "1GB/s"}])
    assert messages(s) == ["links[0].b: unknown node 'sww'; did you mean 'sw'? valid nodes: g0, g1, sw"]


def test_duplicate_node_ids():
    s = spec(nodes=G + [{"id": "g1", "kind": "cpu"}], links=[])
    assert messages(s) == ["nodes[3].id: duplicate node id 'g1'; node ids must be unique"]
    built = spec(build={"kind": "hgx-node"}, nodes=[{"id": "s0.cpu0", "kind": "cpu"}])
    assert "nodes[0].id: duplicate node id 's0.cpu0': the hgx-node builder already makes it" in messages(built)[0]


def test_node_without_links_is_named():
    links = [{"a": "g0", "b": "sw", "bandwidth": "450GB/s"}]
    msg, = messages(spec(nodes=G, links=links))
    assert msg.startswith("links: the graph is disconnected: 2 separate parts; e.g. g1 cannot reach g0")
    assert "g1 has no link at all" in msg
    assert messages(spec(nodes=G[:1])) == ["links: node 'g0' has no link; a topology needs linked nodes"]


def test_disconnected_graph_names_a_node_cut_off():
    nodes = G + [{"id": "g2", "kind": "accelerator"}, {"id": "g3", "kind": "accelerator"}]
    links = [{"a": "g0", "b": "sw", "bandwidth": "1GB/s"}, {"a": "g1", "b": "sw", "bandwidth": "1GB/s"},
             {"a": "g2", "b": "g3", "bandwidth": "1GB/s"}]
    msg, = messages(spec(nodes=nodes, links=links))
    assert "the graph is disconnected: 2 separate parts; e.g. g2, g3 cannot reach g0; add links" in msg


def test_non_positive_bandwidth():
    links = [{"a": "g0", "b": "sw", "bandwidth": "-450GB/s"}, {"a": "g1", "b": "sw", "bandwidth": 0}]
    assert messages(spec(nodes=G, links=links)) == [
        "links[0].bandwidth: bandwidth must be positive, got -4.5e+11 B/s",
        "links[1].bandwidth: bandwidth must be positive, got 0 B/s"]
    assert messages(spec(build={"kind": "hgx-node", "nic_rate": "-400Gb/s"})) == [
        "build.nic_rate: must be positive, got -5e+10"]


def test_fewer_accelerators_than_the_fleet_needs():
    s = spec(build={"kind": "hgx-node"})
    assert messages(s, 16) == [": the fleet has 16 accelerators but the topology places only 8"]


def test_builder_parameter_errors():
    assert messages(spec(build={"kind": "torus", "dims": [4, 1]})) == [
        "build.dims[1]: a torus dimension needs at least 2 chips, got 1"]
    assert "give 2 or 3 sizes" in messages(spec(build={"kind": "torus", "dims": [16]}))[0]
    assert messages(spec(build={"kind": "torus", "dims": [3, 3]})) == [
        "build.chips_per_host: 9 chips do not split into hosts of 4; choose a divisor of 9"]
    msg, = messages(spec(build={"kind": "rail-leaf-spine", "oversubscription": 0}))
    assert msg.startswith("build.oversubscription: oversubscription must be positive (1 = non-blocking")
    assert messages(spec(build={"kind": "hgx-node", "nics": 3})) == [
        "build.nics: nics must be 8 (one per GPU, rail-optimized) or 4 (one per GPU pair), got 3"]
    assert messages(spec(build={"kind": "hgx-node", "pcie_switches": 3}))[0].startswith(
        "build.pcie_switches: 8 GPUs do not split evenly over 3 PCIe switches")
    assert messages(spec()) == [": no nodes: write nodes: and links:, or build: "
                                "{kind: hgx-node | rail-leaf-spine | torus}"]


def test_unknown_builder_fields_and_kinds_are_rejected():
    with pytest.raises(ValidationError, match="unknown field 'dimz'; did you mean 'dims'"):
        spec(build={"kind": "torus", "dims": [4, 4], "dimz": 2})
    with pytest.raises(ValidationError):
        spec(build={"kind": "dragonfly"})


def test_graph_refuses_an_invalid_spec():
    with pytest.raises(ValueError, match="unknown node 'sww'"):
        spec(nodes=G, links=[{"a": "g0", "b": "sww", "bandwidth": "1GB/s"}]).graph()


def test_scenario_reports_builder_errors_at_file_and_line(write_scenario, tmp_path):
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({"name": "r", "build": {"kind": "rail-leaf-spine", "oversubscription": -1}},
                                   sort_keys=False))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write_scenario({"topology": str(topo)}))
    msg, = [str(p) for p in exc.value.problems]
    assert msg.startswith(f"{topo}:4: topology.build.oversubscription: oversubscription must be positive")


def test_scenario_fleet_larger_than_the_topology(write_scenario):
    path = write_scenario({"topology": os.path.join(TOPOLOGIES, "hgx-h100-node.yaml"), "fleet.0.count": 16})
    with pytest.raises(ScenarioError, match="the fleet has 16 accelerators but the topology places only 8"):
        load_scenario(path)


# ---- shipped files, summary, drawing -------------------------------------------------


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(TOPOLOGIES, "*.yaml"))), ids=os.path.basename)
def test_shipped_topologies_validate(path, write_scenario):
    s = load_topology(path)
    assert validate_topology(s) == [] and nx.is_connected(s.graph())
    assert load_scenario(write_scenario({"topology": path})).spec.topology.name == s.name


def test_summary_of_one_server():
    summary = summarize_topology(shipped("hgx-h100-node.yaml"))
    assert summary["nodes"] == {"accelerator": 8, "cpu": 2, "host-memory": 2, "nic": 8, "pcie-switch": 4,
                                "scale-up-switch": 1}
    assert summary["links"] == 31 and summary["servers"] == 1 and summary["diameter_hops"] == 2
    # halves gpu0-3 / gpu4-7: four NVLinks into the NVSwitch plus the socket link
    assert summary["bisection_bandwidth"] == pytest.approx(4 * 450e9 + 64e9)


@pytest.mark.parametrize("name", ["hgx-h100-1node.yaml", "rail-64x8-h100.yaml", "tpu-v6e-4x4.yaml"])
def test_draw_topology_writes_a_png(name, tmp_path):
    out = draw_topology(shipped(name), str(tmp_path / "t.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
