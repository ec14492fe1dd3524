"""`SessionStore`: live sessions in SQL, scoped to their owner, with race-free state changes.

Every state change is one `UPDATE … WHERE id = ? AND user_id = ? AND state IN (<allowed sources>)
RETURNING *`: the database serialises racing calls, so of two conflicting transitions exactly one
matches a row and the other gets `InvalidTransition` — no read-modify-write window, on SQLite or on
PostgreSQL with many replicas. Other users' sessions behave exactly like missing ones (`NotFound`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import InvalidTransition, NotFound
from voicetrace.service.sessions.models import live_sessions as t
from voicetrace.service.sessions.schemas import (
    BUDGET_FIELDS,
    Budgets,
    LiveSession,
    SessionCreate,
    SessionUpdate,
)
from voicetrace.service.sessions.state import OPEN_STATES, SessionState, sources_of

MAX_LIST_LIMIT = 100
RECOVERED_REASON = "recovered_after_restart"
# A failed transition re-reads the state; if a racing call has just made it valid, try again.
_TRANSITION_ATTEMPTS = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_session(row: RowMapping) -> LiveSession:
    budgets = Budgets(**{name: row[name] for name in BUDGET_FIELDS})
    return LiveSession(
        id=row["id"],
        user_id=row["user_id"],
        state=SessionState(row["state"]),
        state_reason=row["state_reason"],
        mode=row["mode"],
        recording_consent=row["recording_consent"],
        secrets_blurred=list(row["secrets_blurred"] or ()),
        created_at=row["created_at"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        transcript_partial=row["transcript_partial"],
        transcript_final=row["transcript_final"],
        budgets=budgets,
        audio_minutes_used=row["audio_minutes_used"],
        summary=row["summary"],
    )


def _audio_minutes(summary: Mapping[str, Any]) -> float | None:
    """Audio minutes from a session summary, in the same units the budget tracker counts."""
    if isinstance(summary.get("audio_minutes"), int | float):
        return float(summary["audio_minutes"])
    parts = [summary.get("audio_in_ms"), summary.get("audio_out_ms")]
    if any(isinstance(p, int | float) for p in parts):
        return sum(float(p) for p in parts if isinstance(p, int | float)) / 60_000
    seconds = [summary.get("audio_in_s"), summary.get("audio_out_s")]  # telemetry's SessionSummary
    if any(isinstance(s, int | float) for s in seconds):
        return sum(float(s) for s in seconds if isinstance(s, int | float)) / 60
    return None


class SessionStore:
    """CRUD and state machine for live sessions. Safe to share across tasks and replicas."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    async def create(self, user_id: str, data: SessionCreate) -> LiveSession:
        """Create a session for `user_id`, already CONNECTING (IDLE → CONNECTING on create)."""
        if not user_id:
            raise ValueError("user_id must be a non-empty string")
        now = self._clock()
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "state": SessionState.CONNECTING.value,
            "mode": data.mode,
            "recording_consent": data.recording_consent,
            "secrets_blurred": list(data.secrets_blurred),
            "created_at": now,
            "updated_at": now,
            "audio_minutes_used": 0.0,
            **{name: getattr(data.budgets, name) for name in BUDGET_FIELDS},
        }

        async def insert(conn: AsyncConnection) -> RowMapping:
            return (await conn.execute(t.insert().values(values).returning(*t.c))).mappings().one()

        return _to_session(await self._db.write(insert))

    async def get(self, session_id: str, user_id: str) -> LiveSession:
        row = await self._db.read(lambda conn: self._select(conn, session_id, user_id))
        if row is None:
            raise NotFound()
        return _to_session(row)

    async def list(
        self, user_id: str, state: SessionState | None = None, limit: int = 50
    ) -> list[LiveSession]:
        """The user's sessions, newest first, optionally only those in `state`."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        query = select(t).where(t.c.user_id == user_id)
        if state is not None:
            query = query.where(t.c.state == SessionState(state).value)
        query = query.order_by(t.c.created_at.desc(), t.c.pk.desc()).limit(limit)

        async def fetch(conn: AsyncConnection) -> Sequence[RowMapping]:
            return (await conn.execute(query)).mappings().all()

        return [_to_session(row) for row in await self._db.read(fetch)]

    async def transition(
        self,
        session_id: str,
        user_id: str,
        to: SessionState,
        *,
        reason: str | None = None,
        only_from: Collection[SessionState] | None = None,
    ) -> LiveSession:
        """Move the session to `to` if the state machine allows it from its current state.

        `only_from` narrows the allowed sources further: a user's "resume" is PAUSED → LIVE
        only, while CONNECTING → LIVE belongs to the voice bridge.
        Raises `NotFound` (missing or not the user's) or `InvalidTransition(current, requested)`.
        """
        to = SessionState(to)
        allowed = sources_of(to)
        if only_from is not None:
            allowed &= {SessionState(state) for state in only_from}
            if not allowed:
                raise ValueError(f"no state in {sorted(only_from)} can transition to {to.value}")
        sources = sorted(state.value for state in allowed)
        current: SessionState | None = None
        for _ in range(_TRANSITION_ATTEMPTS):
            now = self._clock()
            values: dict[str, Any] = {"state": to.value, "state_reason": reason, "updated_at": now}
            if to is SessionState.LIVE:
                values["started_at"] = func.coalesce(t.c.started_at, now)
            if to is SessionState.ENDED:
                values |= {"ended_at": now, "end_reason": reason}
            stmt = (
                update(t)
                .where(t.c.id == session_id, t.c.user_id == user_id, t.c.state.in_(sources))
                .values(values)
                .returning(*t.c)
            )

            async def attempt(
                conn: AsyncConnection, stmt: Any = stmt
            ) -> tuple[bool, RowMapping | None]:
                row = (await conn.execute(stmt)).mappings().first()
                if row is not None:
                    return True, row
                return False, await self._select(conn, session_id, user_id)

            changed, found = await self._db.write(attempt)
            if changed:
                assert found is not None
                return _to_session(found)
            if found is None:
                raise NotFound()
            current = SessionState(found["state"])
            if current not in allowed:
                break  # a genuine refusal, not a race we lost by a hair
        assert current is not None
        raise InvalidTransition(current, to)

    async def update(self, session_id: str, user_id: str, patch: SessionUpdate) -> LiveSession:
        """Change transcripts and budget fields; only the fields present in `patch` are written."""
        values = patch.changes()
        if not values:
            return await self.get(session_id, user_id)
        values["updated_at"] = self._clock()
        stmt = (
            update(t)
            .where(t.c.id == session_id, t.c.user_id == user_id)
            .values(values)
            .returning(*t.c)
        )

        async def apply(conn: AsyncConnection) -> RowMapping | None:
            return (await conn.execute(stmt)).mappings().first()

        row = await self._db.write(apply)
        if row is None:
            raise NotFound()
        return _to_session(row)

    async def end(self, session_id: str, user_id: str, reason: str) -> LiveSession:
        """End the session. Not idempotent: ending an ENDED session is an `InvalidTransition`
        (so a second DELETE is a 409 and the first end reason is never overwritten)."""
        return await self.transition(session_id, user_id, SessionState.ENDED, reason=reason)

    async def record_summary(self, session_id: str, summary: Mapping[str, Any]) -> None:
        """Store the end-of-session summary (turns, tool calls, tokens, cost) written by the bridge.

        Not user-scoped: only the trusted bridge calls it. Audio minutes used are taken from the
        summary's `audio_minutes` or `audio_in_ms` + `audio_out_ms` when present.
        """
        if not isinstance(summary, Mapping):
            raise TypeError("summary must be a mapping")
        values: dict[str, Any] = {"summary": dict(summary), "updated_at": self._clock()}
        minutes = _audio_minutes(summary)
        if minutes is not None:
            values["audio_minutes_used"] = minutes

        async def apply(conn: AsyncConnection) -> int:
            result = await conn.execute(update(t).where(t.c.id == session_id).values(values))
            return int(result.rowcount)

        if await self._db.write(apply) == 0:
            raise NotFound()

    async def recover_after_crash(self) -> int:
        """End every session a previous process left open (no bridge can exist for it any more).

        Returns how many were closed. PAUSED is included: a paused session belongs to a bridge
        too, and with no bridge it could never be used again. With several replicas sharing one
        database, call this only when no other replica is serving sessions.
        """
        now = self._clock()
        stmt = (
            update(t)
            .where(t.c.state.in_(sorted(s.value for s in OPEN_STATES)))
            .values(
                state=SessionState.ENDED.value,
                state_reason=RECOVERED_REASON,
                end_reason=RECOVERED_REASON,
                ended_at=now,
                updated_at=now,
            )
        )

        async def apply(conn: AsyncConnection) -> int:
            return int((await conn.execute(stmt)).rowcount)

        return await self._db.write(apply)

    async def drain_writes(self) -> None:
        """Wait until writes handed over by callers that were since cancelled have landed."""
        await self._db.drain()

    @staticmethod
    async def _select(conn: AsyncConnection, session_id: str, user_id: str) -> RowMapping | None:
        query = select(t).where(t.c.id == session_id, t.c.user_id == user_id)
        return (await conn.execute(query)).mappings().first()
