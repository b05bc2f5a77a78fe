"""A token bucket per client address (and one for everybody) for public endpoints."""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["RateLimiter"]


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float | None) -> None:
        self.tokens = tokens
        self.at = at


class RateLimiter:
    """``per_minute`` requests a minute per key after a ``burst``, and ``total_per_minute``
    over all keys; at most ``max_keys`` keys are remembered (the least recently seen
    are forgotten first, so a flood of addresses cannot exhaust memory)."""

    def __init__(
        self, per_minute: int, burst: int, total_per_minute: int, max_keys: int = 10_000
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.total_rate = total_per_minute / 60.0
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Bucket] = OrderedDict()
        self._total_cap = float(total_per_minute)  # at most a minute's worth at once
        self._total = _Bucket(self._total_cap, None)

    @staticmethod
    def _take(bucket: _Bucket, rate: float, cap: float, now: float) -> bool:
        if bucket.at is not None:
            bucket.tokens = min(cap, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._keys.pop(key, None) or _Bucket(self.burst, now)
        self._keys[key] = bucket
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        if not self._take(bucket, self.rate, self.burst, now):
            return False
        return self._take(self._total, self.total_rate, self._total_cap, now)
