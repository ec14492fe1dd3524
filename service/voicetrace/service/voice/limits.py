"""Rate limits of one client connection."""

from __future__ import annotations

import math
import time

CHARS_PER_TOKEN = 4  # Gemini's documented rule of thumb for text


def estimated_text_tokens(text: str) -> int:
    """Prompt tokens a typed text will cost, estimated before it is sent."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


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
