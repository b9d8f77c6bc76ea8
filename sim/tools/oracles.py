"""Queueing theory the simulator is held to.

With one sequence per batch a replica is a single server: its mean queue wait must match
Pollaczek-Khinchine (M/G/1, M/D/1 as a special case), several behind a random router are
independent queues, and a central FIFO in front of c of them is M/G/c (Erlang C, with the
Allen-Cunneen factor for service-time variability, exact for exponential service).
"""
from __future__ import annotations

import math

import numpy as np


def pollaczek_khinchine_wait(arrival_rate: float, service: np.ndarray) -> float:
    """Mean wait in queue of M/G/1 with the service-time sample's first two moments."""
    es, es2 = float(np.mean(service)), float(np.mean(np.square(service)))
    rho = arrival_rate * es
    if rho >= 1:
        return math.inf
    return arrival_rate * es2 / (2.0 * (1.0 - rho))


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c, with offered load a = lambda / mu."""
    rho = offered / servers
    if rho >= 1:
        return 1.0
    top = offered ** servers / math.factorial(servers) / (1.0 - rho)
    return top / (sum(offered ** k / math.factorial(k) for k in range(servers)) + top)


def mgc_wait(arrival_rate: float, servers: int, service: np.ndarray) -> float:
    """Mean wait in queue of M/G/c: Erlang C times (1 + cs^2) / 2 (Allen-Cunneen)."""
    es = float(np.mean(service))
    cs2 = float(np.var(service)) / es ** 2
    if arrival_rate * es >= servers:
        return math.inf
    return erlang_c(servers, arrival_rate * es) / (servers / es - arrival_rate) * (1.0 + cs2) / 2.0
