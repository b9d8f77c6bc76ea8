"""Drawing a topology: the graph to a PNG, nodes coloured by kind, torus chips on their grid
and anything else in layers (servers side by side, fabric switches above); the layouts are
shared with the notebooks' link heatmap (`results.analysis.link_heatmap`).
"""
from __future__ import annotations

from collections import defaultdict

import networkx as nx

from .topology import TopologySpec
from .topology_builders import _link

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
    xs, ys = zip(*pos.values(), strict=True)
    wide, high = max(xs) - min(xs), max(ys) - min(ys)
    fig = Figure(figsize=(min(30, max(6, 4 + 0.35 * wide)), min(12, max(4, 2 + high))))
    ax = fig.add_subplot()
    top = max((bw for _, _, bw in g.edges(data="bandwidth")), default=1.0)
    for wrap in (False, True):  # torus wraparound links as arcs, so they do not hide the others
        edges = [(a, b, bw) for a, b, bw in g.edges(data="bandwidth") if _wraps(g, a, b) == wrap]
        arcs = {"arrows": True, "arrowstyle": "-", "connectionstyle": "arc3,rad=0.25"} if wrap else {}
        nx.draw_networkx_edges(g, pos, edgelist=[e[:2] for e in edges], ax=ax, alpha=0.35,
                               width=[0.3 + 2.5 * bw / top for *_, bw in edges], **arcs)
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
    return ca is not None and cb is not None and sum(abs(x - y) for x, y in zip(ca, cb, strict=True)) > 1


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
            xs, ys = zip(*chips[data["host"]], strict=True)
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


__all__ = ["draw_topology", "draw_nodes", "COLORS", "ROW"]
