"""Equal-cost shortest paths: every shortest path between two nodes, enumerated from one
breadth-first search's predecessors (the fabric's ECMP choices).
"""
from __future__ import annotations

import networkx as nx


def paths_from_predecessors(source, target, pred):
    """Every shortest path from source to target (lists of nodes) given BFS predecessors,
    in the order networkx's all_shortest_paths gives them."""
    if target not in pred:
        raise nx.NetworkXNoPath(f"no path from {source} to {target}")
    seen = {target}
    stack = [[target, 0]]
    top = 0
    while top >= 0:
        node, i = stack[top]
        if node == source:
            yield [p for p, _ in reversed(stack[:top + 1])]
        if len(pred[node]) > i:
            stack[top][1] = i + 1
            nxt = pred[node][i]
            if nxt in seen:
                continue
            seen.add(nxt)
            top += 1
            if top == len(stack):
                stack.append([nxt, 0])
            else:
                stack[top][:] = [nxt, 0]
        else:
            seen.discard(node)
            top -= 1


__all__ = ["paths_from_predecessors"]
