"""The wire log: every frame each Live connection received and sent, for tests to assert on."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from voicetrace.emulator.protocol import has

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
    """An append-only, bounded log shared by all connections of one emulator."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: deque[WireEntry] = deque(maxlen=max_entries)

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
        self._entries.append(
            WireEntry(
                connection,
                direction,
                kind,
                message,
                size,
                time.monotonic(),
                close_code,
                close_reason,
            )
        )

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
