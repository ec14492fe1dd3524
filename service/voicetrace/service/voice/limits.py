"""Rate limits of one client connection."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` units per second on average, `burst` at once (frames, or audio seconds)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= amount
        return self._tokens >= 0
