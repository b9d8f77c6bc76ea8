"""Max-min fair sharing of links among network flows: the rates the fabric gives its active
flows (`sim.fabric.network`), a numba function over arrays."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def maxmin_rates(capacity, flow_ptr, flow_links, flow_cap):
    """Max-min fair rates of flows sharing links, by progressive filling.

    capacity[l]    bytes/s of directed link l
    flow_links[flow_ptr[f]:flow_ptr[f+1]]  the links flow f crosses
    flow_cap[f]    a limit of the flow's own (an endpoint's rate), or inf

    Every unfrozen flow's rate rises at the same pace; when a link fills, the flows on it
    freeze at their current rate (the link is their bottleneck), and the rest go on. The
    result: no link over capacity, and each flow limited by a link (or its own cap) on which
    no other flow gets more.
    """
    n_flows = flow_cap.shape[0]
    n_links = capacity.shape[0]
    rate = np.zeros(n_flows)
    remaining = capacity.copy()
    active = np.ones(n_flows, np.bool_)
    count = np.zeros(n_links, np.int64)
    for f in range(n_flows):
        for j in range(flow_ptr[f], flow_ptr[f + 1]):
            count[flow_links[j]] += 1
    left = n_flows
    while left > 0:
        inc = np.inf
        for link in range(n_links):
            if count[link] > 0:
                share = remaining[link] / count[link]
                if share < inc:
                    inc = share
        for f in range(n_flows):
            if active[f]:
                room = flow_cap[f] - rate[f]
                if room < inc:
                    inc = room
        if inc == np.inf:  # flows that cross no link and have no cap: leave them at zero
            break
        if inc < 0.0:
            inc = 0.0
        for f in range(n_flows):
            if active[f]:
                rate[f] += inc
        for link in range(n_links):
            remaining[link] -= inc * count[link]
        # freeze flows on full links or at their own cap
        for f in range(n_flows):
            if not active[f]:
                continue
            frozen = rate[f] >= flow_cap[f] * (1.0 - 1e-12)
            if not frozen:
                for j in range(flow_ptr[f], flow_ptr[f + 1]):
                    link = flow_links[j]
                    if remaining[link] <= capacity[link] * 1e-12:
                        frozen = True
                        break
            if frozen:
                active[f] = False
                left -= 1
                for j in range(flow_ptr[f], flow_ptr[f + 1]):
                    count[flow_links[j]] -= 1
    return rate
