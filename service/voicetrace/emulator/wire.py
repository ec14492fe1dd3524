"""The wire log: the frames each Live connection received and sent, for tests to assert on.

Bounded, so a long-running emulator stays flat: it keeps the newest frames within `max_entries`
and within `max_bytes` of charged size — a frame is charged its size on the wire plus
`ENTRY_OVERHEAD` for the decoded objects kept with it — and drops the oldest first
(`dropped` counts them). The defaults hold about 60 seconds of continuous audio replies from
a few sessions; tests read frames within those.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from voicetrace.emulator.protocol import has

MAX_ENTRIES = 50_000
MAX_BYTES = 32 * 1024 * 1024
ENTRY_OVERHEAD = 1024  # decoded dicts + the entry itself, measured at ~0.6-1 KiB per message

Direction = Literal["in", "out"]
Kind = Literal["text", "binary", "close"]


@dataclass(frozen=True, slots=True)
class WireEntry:
    """One frame. `message` is the decoded JSON (None for close frames and undecodable data)."""

    connection: int
    direction: Direction
    kind: Kind
    message: dict[str, Any] | None
    size: int
    at: float
    close_code: int | None = None
    close_reason: str = ""

    def has(self, key: str) -> bool:
        """True when the message has top-level `key` (either casing)."""
        return has(self.message, key)


class WireLog:
    """An append-only log shared by all connections of one emulator, bounded in entries and
    in charged bytes."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("wire log bounds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: deque[WireEntry] = deque()
        self._charged = 0
        self.dropped = 0  # entries evicted to stay within the bounds

    def record(
        self,
        connection: int,
        direction: Direction,
        kind: Kind,
        message: dict[str, Any] | None,
        size: int,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        entry = WireEntry(
            connection, direction, kind, message, size, time.monotonic(), close_code, close_reason
        )
        self._entries.append(entry)
        self._charged += _charge(entry)
        while len(self._entries) > self.max_entries or (
            self._charged > self.max_bytes and len(self._entries) > 1
        ):
            self._charged -= _charge(self._entries.popleft())
            self.dropped += 1

    @property
    def charged_bytes(self) -> int:
        """The bytes the kept entries are charged against `max_bytes`."""
        return self._charged

    def __iter__(self) -> Iterator[WireEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> WireEntry:
        return self._entries[index]

    def select(
        self,
        direction: Direction | None = None,
        key: str | None = None,
        connection: int | None = None,
    ) -> list[WireEntry]:
        """Entries filtered by direction, top-level message key and connection number."""
        return [
            e
            for e in self
            if (direction is None or e.direction == direction)
            and (connection is None or e.connection == connection)
            and (key is None or e.has(key))
        ]

    def closes(self) -> list[WireEntry]:
        return [e for e in self if e.kind == "close"]

    def clear(self) -> None:
        self._entries.clear()
        self._charged = 0


def _charge(entry: WireEntry) -> int:
    return entry.size + ENTRY_OVERHEAD
