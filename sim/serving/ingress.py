"""Requests carried over the fabric: from the ingress node to the replica's host, and back."""
from __future__ import annotations


def carry_requests(env, spec, router, table, fabric, placement) -> None:
    """Requests enter at the ingress node: the prompt's payload flows to the replica's host
    CPU before the replica sees it; the reply's flows back when the request completes."""
    topo = spec.topology
    node, per_token = spec.ingress.node, spec.ingress.bytes_per_token
    host = {i: topo.host_cpu(nodes[0]) for i, nodes in placement.items()}

    def deliver(rep, r):
        flow = fabric.transfer(node, host[rep.index], float(table.prompt[r]) * per_token, "request")
        flow.callbacks.append(lambda _: rep.submit(r))
    router.deliver = deliver

    def reply(r, when):
        if table.state[r] == 1 and table.replica[r] >= 0:
            fabric.transfer(host[int(table.replica[r])], node, float(table.output[r]) * per_token, "reply")
    table.ended.subscribe(reply)
