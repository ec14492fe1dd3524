"""Replica leases: which instance serves a session, and ending the sessions nobody serves.

A session's voice bridge lives in exactly one process. When the session goes LIVE the store
records that process's `instance_id` as its owner with a lease (`lease_expires_at`); the owner's
`LeaseKeeper` renews the leases of all its open sessions every `lease_s / 3` with ONE `UPDATE`.
A replica that dies stops renewing, and once its leases expire any other replica's sweeper (or
its own successor at startup) ends those sessions — and only those: a restarting replica never
ends sessions another live replica is serving. Sessions ended this way get a summary rebuilt from
their recorded turns. Never-connected (CONNECTING) sessions are ended after the connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.models import live_sessions as t
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.rows import BRIDGED, lease_lost
from voicetrace.service.sessions.state import OPEN_STATES, SessionState, StateReason
from voicetrace.service.sessions.turns import summary_from_turns
from voicetrace.telemetry import EndReason, SessionSummary
from voicetrace.telemetry.recovery import RootContext


class Leased(Protocol):
    """What the lease keeper needs of the session store (no import of it: no cycle)."""

    @property
    def policy(self) -> SessionPolicy: ...

    @property
    def instance_id(self) -> str: ...

    async def heartbeat(self) -> int: ...

    async def sweep(self) -> int: ...


log = logging.getLogger(__name__)

S = SessionState
RECOVERED_REASON = StateReason.RECOVERED
OWNER_LOST_REASON = StateReason.OWNER_LOST
CONNECT_TIMEOUT_REASON = StateReason.CONNECT_TIMEOUT
_OPEN = tuple(sorted(state.value for state in OPEN_STATES))


@dataclass(frozen=True, slots=True)
class LostTrace:
    """A session ended by recovery or the sweeper whose root span its process never ended."""

    session_id: str
    user_id: str
    mode: str
    root: RootContext
    summary: SessionSummary


Lost = list[LostTrace]


async def _end_where(
    conn: AsyncConnection,
    where: ColumnElement[bool],
    reason: str,
    now: datetime,
    lost: Lost | None = None,
) -> int:
    """End every open session matching `where`, and give those without a summary one (and,
    with `lost`, collect the traces a dead process left open)."""
    ended = (
        update(t)
        .where(t.c.state.in_(_OPEN), where)
        .values(
            state=S.ENDED.value,
            state_reason=reason,
            end_reason=reason,
            ended_at=now,
            updated_at=now,
        )
        .returning(*t.c)
    )
    rows = (await conn.execute(ended)).mappings().all()
    for row in rows:
        if row["summary"] is None:
            summary = await summary_from_turns(conn, row, reason)
            await conn.execute(update(t).where(t.c.id == row["id"]).values(summary=summary))
            if lost is not None and row["trace_id"] and row["root_span_id"]:
                lost.append(_lost_trace(row, summary))
    return len(rows)


def _lost_trace(row: RowMapping, summary: dict[str, Any]) -> LostTrace:
    root = RootContext(
        row["trace_id"], row["root_span_id"], bool(row["trace_sampled"]), row["trace_start_ns"] or 0
    )
    totals = SessionSummary(
        session_id=row["id"],
        end_reason=EndReason.RECOVERED,
        turns=summary["turns"],
        tool_calls=0,
        tool_errors=0,
        interruptions=0,
        duration_s=0.0,
        input_tokens=summary["input_tokens"],
        output_tokens=summary["output_tokens"],
        tokens_by_modality=summary["tokens_by_modality"],
        cost_usd=summary["cost_usd"],
        audio_in_s=summary["audio_in_s"],
        audio_out_s=summary["audio_out_s"],
    )
    return LostTrace(row["id"], row["user_id"], row["mode"], root, totals)


async def expire_connecting(
    conn: AsyncConnection,
    now: datetime,
    policy: SessionPolicy,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
) -> int:
    where = and_(t.c.state == S.CONNECTING.value, t.c.created_at <= now - policy.connect_timeout)
    if user_id is not None:
        where = and_(where, t.c.user_id == user_id)
    if session_id is not None:
        where = and_(where, t.c.id == session_id)
    return await _end_where(conn, where, CONNECT_TIMEOUT_REASON, now)


async def heartbeat(db: Database, policy: SessionPolicy, now: datetime) -> int:
    stmt = (
        update(t)
        .where(t.c.owner_instance == policy.instance_id, t.c.state.in_(BRIDGED))
        .values(lease_expires_at=now + policy.lease)
    )

    async def apply(conn: AsyncConnection) -> int:
        return int((await conn.execute(stmt)).rowcount)

    return await db.write(apply)


async def sweep(db: Database, policy: SessionPolicy, now: datetime, lost: Lost) -> int:
    return await db.write(lambda conn: _sweep_in(conn, policy, now, lost))


async def recover(db: Database, policy: SessionPolicy, now: datetime, lost: Lost) -> int:
    mine = and_(t.c.state.in_(BRIDGED), t.c.owner_instance == policy.instance_id)
    unowned = and_(t.c.state.in_(BRIDGED), t.c.owner_instance.is_(None))

    async def apply(conn: AsyncConnection) -> int:
        ended = await _end_where(conn, or_(mine, unowned), RECOVERED_REASON, now, lost)
        return ended + await _sweep_in(conn, policy, now, lost)

    return await db.write(apply)


async def _sweep_in(conn: AsyncConnection, policy: SessionPolicy, now: datetime, lost: Lost) -> int:
    ended = await expire_connecting(conn, now, policy)
    return ended + await _end_where(
        conn, lease_lost(policy.instance_id, now), OWNER_LOST_REASON, now, lost
    )


class LeaseKeeper:
    """Background heartbeat + sweep for one store, every `policy.heartbeat_interval_s`.

    Failures (database briefly down) are logged by type and retried next round; the writes are
    detached from this task, so stopping it never interrupts one."""

    def __init__(self, store: Leased) -> None:
        self._store = store
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    @classmethod
    def start(cls, store: Leased) -> LeaseKeeper:
        keeper = cls(store)
        keeper._task = asyncio.get_running_loop().create_task(
            keeper._run(), name=f"leases:{store.instance_id}"
        )
        return keeper

    async def _run(self) -> None:
        interval = self._store.policy.heartbeat_interval_s
        while True:
            try:
                await self._store.heartbeat()
                ended = await self._store.sweep()
                if ended:
                    log.warning("ended %d session(s) whose owner or client never came", ended)
            except Exception as exc:  # keep beating: the next round may reach the database
                log.warning("session lease round failed: %s", type(exc).__name__)
            self.rounds += 1
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
