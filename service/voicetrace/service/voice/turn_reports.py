"""When a turn's summary reaches the client and the budget.

The telemetry *settles* a turn when its usage is final (it came with `turnComplete`, came late,
or will not come); the settled summary carries exactly the numbers on the turn's `chat` span.
The client gets each turn's `turn_complete` once: at settlement, or — when usage is slow —
after the usage wait with what is known. The budget counts every settled turn exactly once,
even when its usage came after the client was told. `record` (the usage ledger) gets every
settled turn synchronously the moment it reaches the loop — before any await, so neither a
cancelled reporting task nor the end of the session can skip one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from voicetrace.telemetry import TurnSummary

Report = Callable[[TurnSummary], Awaitable[None]]


class TurnReports:
    """One session's turn summaries on their way to the client and the budget."""

    def __init__(
        self,
        usage_wait_s: float,
        *,
        send_summary: Report,
        count_settled: Report,
        record: Callable[[TurnSummary], Any] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._wait_s = usage_wait_s + 0.05  # just past the telemetry's own deadline
        self._send_summary, self._count_settled = send_summary, count_settled
        self._record = record
        self._settled: asyncio.Queue[TurnSummary] = asyncio.Queue()
        self._reported: set[int] = set()
        self._waiting: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def settled_threadsafe(self, summary: TurnSummary) -> None:
        """`SessionTrace`'s settled-turn callback: runs on any thread, hands over to the loop."""
        self._loop.call_soon_threadsafe(self._arrived, summary)

    def _arrived(self, summary: TurnSummary) -> None:
        if self._record is not None:
            self._record(summary)
        self._settled.put_nowait(summary)

    def turn_closed(self, summary: TurnSummary | None) -> None:
        """The server closed a turn (its usage may still be on the way)."""
        if summary is None or summary.number in self._reported:
            return
        self._waiting[summary.number] = self._loop.call_later(
            self._wait_s, self._report_in_background, summary
        )

    async def run(self) -> None:
        """Report and count settled turns until cancelled."""
        while True:
            summary = await self._settled.get()
            await self._report(summary)
            await self._count_settled(summary)

    async def finish(self) -> None:
        """The session ends: turns settled by now still reach the client; timers stop."""
        await asyncio.sleep(0)  # settlements from `SessionTrace.end()` reach the queue
        while not self._settled.empty():
            await self._report(self._settled.get_nowait())
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()

    def _report_in_background(self, summary: TurnSummary) -> None:
        self._spawn(self._report(summary))

    async def _report(self, summary: TurnSummary) -> None:
        handle = self._waiting.pop(summary.number, None)
        if handle is not None:
            handle.cancel()
        if summary.number in self._reported:
            return
        self._reported.add(summary.number)
        await self._send_summary(summary)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
