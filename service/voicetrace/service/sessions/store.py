"""`SessionStore`: live sessions in SQL, scoped to their owner, with race-free state changes.

Every state change is one `UPDATE … WHERE id = ? AND user_id = ? AND state IN (<allowed sources>)
AND <guards> RETURNING *`: the database serialises racing calls, so of two conflicting transitions
exactly one matches a row and the other gets a typed refusal — no read-modify-write window, on
SQLite or on PostgreSQL with many replicas. Other users' sessions behave exactly like missing ones
(`NotFound`). The guards (see docs/reliability.md):

- ownership: a LIVE/PAUSED session belongs to the instance whose bridge holds it; while that
  instance's lease is valid, no other instance may change it (`OwnedElsewhere`);
- budgets: nothing becomes LIVE while `budget_exhausted` is set (`BudgetExhausted`);
- connecting: CONNECTING → LIVE only within the connect timeout (`ConnectTimedOut`) and under the
  per-user cap on live sessions (`SessionLimitExceeded`).

All work goes through `Database.write` / `Database.read`, which cannot be cancelled half way.
Settled-turn usage (`record_turn`) and replica leases (`heartbeat`, `sweep`, `recover_after_crash`)
live in `sessions.turns` and `sessions.leases`; the methods here are their public face.

Long because: every state change with its guards (owner, lease, caps, budget) is one
transaction here, in one place; row mapping, turn usage, leases and policy live beside it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions import leases, turns
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import (
    BudgetExhausted,
    ConnectTimedOut,
    InvalidTransition,
    NotFound,
    OwnedElsewhere,
    SessionError,
    SessionLimitExceeded,
)
from voicetrace.service.sessions.models import live_sessions as t
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.rows import (
    BRIDGED,
    count_sessions,
    exhausted_session_budget,
    lock_user,
    not_owned_elsewhere,
    row_owned_elsewhere,
    to_session,
)
from voicetrace.service.sessions.schemas import (
    BUDGET_FIELDS,
    LiveSession,
    SessionCreate,
    SessionUpdate,
)
from voicetrace.service.sessions.state import SessionState, StateReason, sources_of
from voicetrace.telemetry import SessionSummary, TurnSummary
from voicetrace.telemetry.recovery import RootContext

S = SessionState
MAX_LIST_LIMIT = 100
RECOVERED_REASON = leases.RECOVERED_REASON
CONNECT_TIMEOUT_REASON = leases.CONNECT_TIMEOUT_REASON
BUDGET_REASON = StateReason.BUDGET_EXHAUSTED
# A failed transition re-reads the state; if a racing call has just made it valid, try again.
_TRANSITION_ATTEMPTS = 3

TurnRecorded = turns.TurnRecorded
LeaseKeeper = leases.LeaseKeeper
LostTrace = leases.LostTrace


log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SessionStore:
    """CRUD and state machine for live sessions. Safe to share across tasks and replicas."""

    def __init__(
        self,
        db: Database,
        *,
        policy: SessionPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_lost_trace: Callable[[LostTrace], None] | None = None,
    ) -> None:
        self._db = db
        self.policy = policy or SessionPolicy()
        self._clock = clock
        # Told about each session ended after its process died, to close its trace.
        self._on_lost_trace = on_lost_trace

    @property
    def instance_id(self) -> str:
        return self.policy.instance_id

    # -- create / read ----------------------------------------------------------------------------

    async def create(self, user_id: str, data: SessionCreate) -> LiveSession:
        """Create a session for `user_id`, already CONNECTING (IDLE → CONNECTING on create).

        Refused with `SessionLimitExceeded("open", …)` when the user already has the maximum of
        not-yet-connected sessions (expired ones do not count: they are ended here first).
        """
        if not user_id:
            raise ValueError("user_id must be a non-empty string")
        now = self._clock()
        budgets = {name: getattr(data.budgets, name) for name in BUDGET_FIELDS}
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "state": S.CONNECTING.value,
            "mode": data.mode,
            "recording_consent": data.recording_consent,
            "secrets_blurred": list(data.secrets_blurred),
            "created_at": now,
            "updated_at": now,
            "audio_minutes_used": 0.0,
            "cost_usd": Decimal(0),
            # A zero session budget is exhausted before the first turn (0 means zero).
            "budget_exhausted": exhausted_session_budget(
                {**budgets, "cost_usd": 0, "audio_minutes_used": 0.0}
                | {"camera_tokens": 0, "screen_tokens": 0}
            ),
            **budgets,
        }
        cap = self.policy.max_open_per_user

        async def insert(conn: AsyncConnection) -> RowMapping | None:
            await lock_user(conn, user_id, self._db.is_sqlite)
            await leases.expire_connecting(conn, now, self.policy, user_id=user_id)
            query = select(count_sessions(user_id, (S.CONNECTING.value,)))
            if (await conn.execute(query)).scalar_one() >= cap:
                return None
            return (await conn.execute(t.insert().values(values).returning(*t.c))).mappings().one()

        row = await self._db.write(insert)
        if row is None:
            raise SessionLimitExceeded("open", cap)
        return to_session(row)

    async def get(self, session_id: str, user_id: str) -> LiveSession:
        row = await self._db.read(lambda conn: self._select(conn, session_id, user_id))
        if row is None:
            raise NotFound()
        return to_session(row)

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

        return [to_session(row) for row in await self._db.read(fetch)]

    def connect_expired(self, session: LiveSession) -> bool:
        """True for a CONNECTING session older than the connect timeout."""
        return session.state is S.CONNECTING and (
            session.created_at <= self._clock() - self.policy.connect_timeout
        )

    # -- state machine ----------------------------------------------------------------------------

    async def transition(
        self,
        session_id: str,
        user_id: str,
        to: SessionState,
        *,
        reason: str | None = None,
        only_from: Collection[SessionState] | None = None,
    ) -> LiveSession:
        """Move the session to `to` if the state machine and the guards allow it.

        `only_from` narrows the allowed sources further: a user's "resume" is PAUSED → LIVE
        only, while CONNECTING → LIVE belongs to the voice bridge (and makes this instance the
        session's owner). Raises `NotFound` (missing or not the user's), `InvalidTransition`
        (incl. `ConnectTimedOut`), `OwnedElsewhere`, `BudgetExhausted` or `SessionLimitExceeded`.
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
            stmt = self._transition_stmt(session_id, user_id, to, reason, sources, now)

            async def attempt(
                conn: AsyncConnection, stmt: Any = stmt, now: datetime = now
            ) -> RowMapping | SessionError | None:
                if to is S.LIVE and S.CONNECTING.value in sources:
                    await lock_user(conn, user_id, self._db.is_sqlite)
                row = (await conn.execute(stmt)).mappings().first()
                if row is not None:
                    return row
                found = await self._select(conn, session_id, user_id)
                return await self._refusal(conn, found, to, allowed, now)

            outcome = await self._db.write(attempt)
            if isinstance(outcome, SessionError):
                raise outcome
            if outcome is not None:
                return to_session(outcome)
            # None: lost a race by a hair (the state moved on to an allowed source); retry.
        current = SessionState((await self.get(session_id, user_id)).state)
        raise InvalidTransition(current, to)

    def _transition_stmt(
        self,
        session_id: str,
        user_id: str,
        to: SessionState,
        reason: str | None,
        sources: Sequence[str],
        now: datetime,
    ) -> Any:
        policy = self.policy
        values: dict[str, Any] = {"state": to.value, "state_reason": reason, "updated_at": now}
        guards = [not_owned_elsewhere(policy.instance_id, now)]
        if to is S.LIVE:
            values["started_at"] = func.coalesce(t.c.started_at, now)
            guards.append(t.c.budget_exhausted.is_(None))
            if S.CONNECTING.value in sources:
                connecting = t.c.state == S.CONNECTING.value
                # Connecting makes this instance the owner, under a fresh lease.
                values["owner_instance"] = case(
                    (connecting, policy.instance_id), else_=t.c.owner_instance
                )
                values["lease_expires_at"] = case(
                    (connecting, now + policy.lease), else_=t.c.lease_expires_at
                )
                live = count_sessions(user_id, BRIDGED)
                guards.append(
                    or_(
                        ~connecting,
                        and_(
                            t.c.created_at > now - policy.connect_timeout,
                            live < policy.max_live_per_user,
                        ),
                    )
                )
        if to is S.ENDED:
            values |= {"ended_at": now, "end_reason": reason}
        return (
            update(t)
            .where(t.c.id == session_id, t.c.user_id == user_id, t.c.state.in_(sources), *guards)
            .values(values)
            .returning(*t.c)
        )

    async def _refusal(
        self,
        conn: AsyncConnection,
        found: RowMapping | None,
        to: SessionState,
        allowed: frozenset[SessionState] | set[SessionState],
        now: datetime,
    ) -> SessionError | None:
        """Why the guarded UPDATE matched nothing (`None`: a race worth retrying)."""
        if found is None:
            return NotFound()
        current = SessionState(found["state"])
        if current not in allowed:
            return InvalidTransition(current, to)
        if row_owned_elsewhere(found, self.instance_id, now):
            return OwnedElsewhere(found["owner_instance"], found["lease_expires_at"])
        if to is S.LIVE and found["budget_exhausted"] is not None:
            return BudgetExhausted(found["budget_exhausted"])
        if to is S.LIVE and current is S.CONNECTING:
            if found["created_at"] <= now - self.policy.connect_timeout:
                await leases.expire_connecting(conn, now, self.policy, session_id=found["id"])
                return ConnectTimedOut(self.policy.connect_timeout_s)
            query = select(count_sessions(found["user_id"], BRIDGED))
            if (await conn.execute(query)).scalar_one() >= self.policy.max_live_per_user:
                return SessionLimitExceeded("live", self.policy.max_live_per_user)
        return None

    async def update(self, session_id: str, user_id: str, patch: SessionUpdate) -> LiveSession:
        """Change transcripts and budget fields; only the fields present in `patch` are written.

        Budget changes of a session served by another live instance are refused
        (`OwnedElsewhere`): that instance's bridge would never hear of them. Changing a budget
        re-evaluates `budget_exhausted` against the session's recorded usage.
        """
        values = patch.changes()
        if not values:
            return await self.get(session_id, user_id)
        now = self._clock()
        values["updated_at"] = now
        changes_budget = any(name in values for name in BUDGET_FIELDS)
        guards = [not_owned_elsewhere(self.instance_id, now)] if changes_budget else []
        stmt = (
            update(t)
            .where(t.c.id == session_id, t.c.user_id == user_id, *guards)
            .values(values)
            .returning(*t.c)
        )

        async def apply(conn: AsyncConnection) -> RowMapping | SessionError:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None:
                found = await self._select(conn, session_id, user_id)
                if found is None:
                    return NotFound()
                return OwnedElsewhere(found["owner_instance"], found["lease_expires_at"])
            if not changes_budget:
                return row
            flag = row["budget_exhausted"]
            if flag is None or flag.startswith("session_") or flag in values:
                # Daily budgets are judged by the bridge (the ledger); keep its verdict
                # unless that very budget was just changed.
                flag = exhausted_session_budget(row)
            if flag == row["budget_exhausted"]:
                return row
            again = update(t).where(t.c.id == session_id).values(budget_exhausted=flag)
            return (await conn.execute(again.returning(*t.c))).mappings().one()

        outcome = await self._db.write(apply)
        if isinstance(outcome, SessionError):
            raise outcome
        return to_session(outcome)

    async def end(self, session_id: str, user_id: str, reason: str) -> LiveSession:
        """End the session. Not idempotent: ending an ENDED session is an `InvalidTransition`
        (so a second DELETE is a 409 and the first end reason is never overwritten)."""
        return await self.transition(session_id, user_id, S.ENDED, reason=reason)

    async def pause_for_budget(self, session_id: str, user_id: str, budget: str) -> LiveSession:
        """The bridge found `budget` (a budget field, e.g. `session_usd`) used up: remember it
        (resume is refused until it is raised) and pause the session if it is LIVE — one
        transaction. A session already PAUSED just gets the flag; an ENDED one is unchanged."""
        if budget not in BUDGET_FIELDS:
            raise ValueError(f"unknown budget {budget!r}; one of {', '.join(BUDGET_FIELDS)}")

        async def apply(conn: AsyncConnection) -> RowMapping | None:
            now = self._clock()
            scope = and_(t.c.id == session_id, t.c.user_id == user_id)
            open_states = (S.CONNECTING.value, *BRIDGED)
            await conn.execute(
                update(t)
                .where(scope, t.c.state.in_(open_states))
                .values(budget_exhausted=budget, updated_at=now)
            )
            await conn.execute(
                update(t)
                .where(scope, t.c.state == S.LIVE.value)
                .values(state=S.PAUSED.value, state_reason=BUDGET_REASON, updated_at=now)
            )
            return await self._select(conn, session_id, user_id)

        row = await self._db.write(apply)
        if row is None:
            raise NotFound()
        return to_session(row)

    # -- usage, summaries, replicas ---------------------------------------------------------------

    async def record_turn(
        self,
        session_id: str,
        number: int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: Decimal,
        audio_in_s: float,
        audio_out_s: float,
        tokens_by_modality: Mapping[str, int],
        camera_tokens: int = 0,
        screen_tokens: int = 0,
    ) -> TurnRecorded:
        """Persist one settled turn's usage and add it to the session's running totals, in one
        transaction. Idempotent by (session, turn number): a retried write changes nothing.
        Not user-scoped: only the trusted bridge calls it."""
        turn = turns.SettledTurn.checked(
            number, input_tokens, output_tokens, cost_usd, audio_in_s, audio_out_s,
            tokens_by_modality, camera_tokens, screen_tokens,
        )  # fmt: skip
        return await turns.record(self._db, session_id, turn, self._clock())

    async def record_settled_turn(self, session_id: str, turn: TurnSummary) -> TurnRecorded:
        """`record_turn` for the telemetry's settled `TurnSummary` (the `chat` span's numbers)."""
        return await self.record_turn(
            session_id,
            turn.number,
            turn.input_tokens,
            turn.output_tokens,
            turn.cost_usd if turn.cost_usd is not None else Decimal(0),
            turn.audio_in_ms / 1000.0,
            turn.audio_out_ms / 1000.0,
            turn.tokens_by_modality,
            turn.camera_tokens,
            turn.screen_tokens,
        )

    async def record_summary(self, session_id: str, summary: SessionSummary) -> None:
        """Store the end-of-session summary (turns, tool calls, tokens, cost, audio) the
        telemetry computed. Not user-scoped: only the trusted bridge calls it."""
        values: dict[str, Any] = {
            "summary": summary.to_json(),
            "audio_minutes_used": summary.audio_minutes,
            "updated_at": self._clock(),
        }

        async def apply(conn: AsyncConnection) -> int:
            result = await conn.execute(update(t).where(t.c.id == session_id).values(values))
            return int(result.rowcount)

        if await self._db.write(apply) == 0:
            raise NotFound()

    async def recover_after_crash(self) -> int:
        """At startup: end the sessions no live instance can be serving — those this instance
        id held before a restart, those whose owner's lease expired, expired CONNECTING ones —
        writing a summary from their recorded turns. Returns how many were ended."""
        lost: leases.Lost = []
        ended = await leases.recover(self._db, self.policy, self._clock(), lost)
        self._report_lost(lost)
        return ended

    async def heartbeat(self) -> int:
        """Renew the lease of every open session this instance owns; returns how many."""
        return await leases.heartbeat(self._db, self.policy, self._clock())

    async def sweep(self) -> int:
        """End sessions whose owner is gone (lease expired) and CONNECTING ones nobody
        connected to in time; returns how many were ended."""
        lost: leases.Lost = []
        ended = await leases.sweep(self._db, self.policy, self._clock(), lost)
        self._report_lost(lost)
        return ended

    def _report_lost(self, lost: leases.Lost) -> None:
        if self._on_lost_trace is None:
            return
        for trace in lost:
            try:
                self._on_lost_trace(trace)
            except Exception:
                log.exception("could not close the trace of session %s", trace.session_id)

    async def clear_daily_budget_flag(self, session_id: str, user_id: str) -> None:
        """A daily budget that paused the session has room again (the ledger said so, or the
        day rolled over): the session may be resumed. A session budget's flag stays; it is
        cleared by raising that budget (PATCH)."""

        async def apply(conn: AsyncConnection) -> None:
            await conn.execute(
                update(t)
                .where(
                    t.c.id == session_id,
                    t.c.user_id == user_id,
                    t.c.budget_exhausted.like("daily\\_%", escape="\\"),
                )
                .values(budget_exhausted=None, updated_at=self._clock())
            )

        await self._db.write(apply)

    async def record_root(self, session_id: str, root: RootContext) -> None:
        """Remember a session's root span, so its trace can be closed if this process dies."""
        values = {
            "trace_id": root.trace_id,
            "root_span_id": root.span_id,
            "trace_sampled": root.sampled,
            "trace_start_ns": root.start_ns,
        }

        async def apply(conn: AsyncConnection) -> None:
            await conn.execute(update(t).where(t.c.id == session_id).values(values))

        await self._db.write(apply)

    def start_lease_keeper(self) -> LeaseKeeper:
        """Start heartbeat + sweep in the background (call from the app lifespan; `stop()` it
        before the database is disposed)."""
        return leases.LeaseKeeper.start(self)

    async def drain_writes(self) -> None:
        """Wait until writes handed over by callers that were since cancelled have landed."""
        await self._db.drain()

    @staticmethod
    async def _select(conn: AsyncConnection, session_id: str, user_id: str) -> RowMapping | None:
        query = select(t).where(t.c.id == session_id, t.c.user_id == user_id)
        return (await conn.execute(query)).mappings().first()
