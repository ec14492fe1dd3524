"""`LedgerWriter`: settled generations → the ledger, off the voice path, never lost quietly.

`record()` is a synchronous append to a bounded in-memory buffer (no I/O, no await: a settled
turn costs the voice path a few microseconds, measured in bench/ledger.py). One background task
writes the buffer in batches; a failed write (database down, locked, timing out) keeps the batch
at the head of the buffer and retries with capped exponential backoff, so an outage delays usage
but never breaks a turn nor loses it — until the buffer is full: then new entries are refused
and counted (`overflow`, on `/api/observability/health`), the one place usage can be lost, and a
loud one. A retried batch whose first commit did land is harmless: inserts are idempotent.

Entries not yet written stay visible through `pending()`, so budgets count them during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, date, datetime
from typing import Any

from voicetrace.service.ledger.entry import LedgerEntry, Usage
from voicetrace.service.ledger.store import LedgerStore

log = logging.getLogger(__name__)

_BACKOFF_START_S = 0.05
_BACKOFF_MAX_S = 5.0


class LedgerWriter:
    def __init__(self, store: LedgerStore, *, max_buffer: int = 10_000, batch: int = 200) -> None:
        if max_buffer < 1 or batch < 1:
            raise ValueError("max_buffer and batch must be at least 1")
        self.store = store
        self._max, self._batch = max_buffer, batch
        self._buffer: deque[tuple[LedgerEntry, float]] = deque()
        self._pending: dict[tuple[str, date], Usage] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.recorded = self.written = self.replayed = self.overflow = 0
        self.failures = 0
        # Held while a batch is written and taken out of `pending`: a reader holding it sees
        # every entry exactly once (in the database or pending, never both, never neither).
        self.lock = asyncio.Lock()
        self.last_error: str | None = None
        self.last_success: datetime | None = None

    # -- voice path -------------------------------------------------------------------------------
    def record(self, entry: LedgerEntry) -> bool:
        """Queue one settled generation; False (and counted) only when the buffer is full."""
        if len(self._buffer) >= self._max:
            self.overflow += 1
            if self.overflow == 1 or self.overflow % 1000 == 0:
                log.error("usage ledger buffer full: %d settled turn(s) lost", self.overflow)
            return False
        self._buffer.append((entry, time.monotonic()))
        key = (entry.user_id, entry.day)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = pending = Usage()
        pending.add(entry.usage)
        self.recorded += 1
        self._idle.clear()
        self._wake.set()
        return True

    def pending(self, user_id: str, day: date) -> Usage:
        """This process's usage for the user's day that is not in the database yet (add it to
        a database read made under `lock`)."""
        return self._pending.get((user_id, day)) or Usage()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-ledger-writer")

    async def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until everything recorded so far is written."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float) -> None:
        """Write what is buffered (bounded), then stop; what is left is logged, by count."""
        if not await self.flush(timeout_s) and self._buffer:
            log.error("usage ledger stopped with %d settled turn(s) unwritten", len(self._buffer))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- background -------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = _BACKOFF_START_S
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [entry for entry, _ in list(self._buffer)[: self._batch]]
            try:
                async with self.lock:
                    new = await self.store.write(batch)
                    for _ in batch:
                        done, _at = self._buffer.popleft()
                        self._forget_pending(done)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down or busy: keep the batch, retry
                self.failures += 1
                self.last_error = type(exc).__name__
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("usage ledger write failed (%s); retrying", self.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            backoff = _BACKOFF_START_S
            self.written += new
            self.replayed += len(batch) - new
            self.last_success = datetime.now(UTC)

    def _forget_pending(self, entry: LedgerEntry) -> None:
        key = (entry.user_id, entry.day)
        pending = self._pending.get(key)
        if pending is None:
            return
        for name, value in entry.usage.as_columns().items():
            setattr(pending, name, getattr(pending, name) - value)
        if pending.turns <= 0:
            del self._pending[key]

    # -- health -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        oldest = self._buffer[0][1] if self._buffer else None
        return {
            "buffered": len(self._buffer),
            "max_buffer": self._max,
            "recorded": self.recorded,
            "written": self.written,
            "replayed": self.replayed,
            "overflow": self.overflow,
            "write_failures": self.failures,
            "last_error": self.last_error,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "lag_s": round(time.monotonic() - oldest, 3) if oldest is not None else 0.0,
            "running": self._task is not None and not self._task.done(),
        }
