"""Erlang C staffing: how many agents an hour's traffic needs for a service-level target.

Traffic A (erlangs) = calls per hour x AHT (s) / 3600. With N agents (N > A):

    P(wait) = (A^N / N! · N/(N-A)) / (Σ_{k<N} A^k/k! + A^N / N! · N/(N-A))      (Erlang C)
    SL(T)   = 1 - P(wait) · e^{-(N-A)·T/AHT}

The smallest N with SL(T) ≥ target is the advice. Terms are built iteratively
(A^k/k! = previous · A/k), so no factorial or power overflows for large N.
"""

from __future__ import annotations

import math

__all__ = ["agents_needed", "erlang_c", "service_level"]

MAX_AGENTS = 10_000


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a call waits (0..1); 1 when the queue is unstable (N ≤ A)."""
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    term = 1.0  # A^0/0!
    total = 0.0
    for k in range(agents):
        total += term
        term = term * traffic / (k + 1)
    # term is now A^N/N!
    top = term * agents / (agents - traffic)
    return top / (total + top)


def service_level(agents: int, traffic: float, aht_s: float, target_s: float) -> float:
    """Fraction of calls answered within ``target_s`` with ``agents`` agents."""
    if traffic <= 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    pw = erlang_c(agents, traffic)
    return 1.0 - pw * math.exp(-(agents - traffic) * target_s / aht_s)


def agents_needed(
    calls_per_hour: float, aht_s: float | None, target_s: float, target_level: float
) -> int | None:
    """Smallest N meeting ``target_level`` (0..1) within ``target_s``; 0 without traffic,
    None when AHT is unknown (nothing handled yet)."""
    if calls_per_hour <= 0:
        return 0
    if aht_s is None or aht_s <= 0:
        return None
    traffic = calls_per_hour * aht_s / 3600.0
    n = max(1, math.floor(traffic) + 1)
    while n < MAX_AGENTS:
        if service_level(n, traffic, aht_s, target_s) >= target_level:
            return n
        n += 1
    return MAX_AGENTS
