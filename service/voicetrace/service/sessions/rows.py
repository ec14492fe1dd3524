"""Row → domain conversions and the SQL predicates shared by the store's modules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, not_, or_, select, text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions.models import live_sessions as t
from voicetrace.service.sessions.schemas import BUDGET_FIELDS, Budgets, LiveSession, SessionUsage
from voicetrace.service.sessions.state import SessionState

S = SessionState
# States in which a voice bridge holds the session (and so an owner instance does).
BRIDGED = (S.LIVE.value, S.PAUSED.value)
# Far in the past: compares as "expired" where a lease is missing.
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def to_session(row: RowMapping) -> LiveSession:
    budgets = Budgets(**{name: row[name] for name in BUDGET_FIELDS})
    usage = SessionUsage(
        turns=row["turns_settled"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost_usd=row["cost_usd"],
        audio_in_s=row["audio_in_s"],
        audio_out_s=row["audio_out_s"],
        camera_tokens=row["camera_tokens"],
        screen_tokens=row["screen_tokens"],
    )
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
        usage=usage,
        budget_exhausted=row["budget_exhausted"],
        owner_instance=row["owner_instance"],
        lease_expires_at=row["lease_expires_at"],
    )


def owned_elsewhere(instance_id: str, now: datetime) -> ColumnElement[bool]:
    """The session's bridge runs on another instance that is still alive (lease not expired)."""
    return and_(
        t.c.state.in_(BRIDGED),
        t.c.owner_instance.is_not(None),
        t.c.owner_instance != instance_id,
        func.coalesce(t.c.lease_expires_at, EPOCH) > now,
    )


def not_owned_elsewhere(instance_id: str, now: datetime) -> ColumnElement[bool]:
    return not_(owned_elsewhere(instance_id, now))


def row_owned_elsewhere(row: RowMapping, instance_id: str, now: datetime) -> bool:
    return bool(
        row["state"] in BRIDGED
        and row["owner_instance"] is not None
        and row["owner_instance"] != instance_id
        and (row["lease_expires_at"] or EPOCH) > now
    )


def lease_lost(instance_id: str, now: datetime) -> ColumnElement[bool]:
    """A bridged session whose owner is gone: no lease, or an expired one held by another."""
    return and_(
        t.c.state.in_(BRIDGED),
        or_(
            t.c.owner_instance.is_(None),
            and_(
                t.c.owner_instance != instance_id,
                func.coalesce(t.c.lease_expires_at, EPOCH) <= now,
            ),
        ),
    )


def exhausted_session_budget(row: Mapping[Any, Any]) -> str | None:
    """The session budget the row's own totals have used up, if any (`0` is used up at once)."""
    usd = row["session_usd"]
    if usd is not None and Decimal(row["cost_usd"]) >= Decimal(usd):
        return "session_usd"
    minutes = row["session_audio_minutes"]
    if minutes is not None and float(row["audio_minutes_used"]) >= float(minutes):
        return "session_audio_minutes"
    for budget, used in (
        ("session_video_tokens", "camera_tokens"),
        ("session_screen_tokens", "screen_tokens"),
    ):
        tokens = row[budget]
        if tokens is not None and int(row[used]) >= int(tokens):
            return budget
    return None


def count_sessions(
    user_id: str, states: tuple[str, ...], created_after: datetime | None = None
) -> ScalarSelect[int]:
    """`SELECT count(*)` of the user's sessions in `states` (a scalar subquery)."""
    other = t.alias("other")
    query = select(func.count()).select_from(other)
    query = query.where(other.c.user_id == user_id, other.c.state.in_(states))
    if created_after is not None:
        query = query.where(other.c.created_at > created_after)
    return query.scalar_subquery()


async def lock_user(conn: AsyncConnection, user_id: str, is_sqlite: bool) -> None:
    """Serialise one user's capped inserts/claims across PostgreSQL connections (replicas);
    SQLite has a single writer already. Released at commit."""
    if not is_sqlite:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"vt-user:{user_id}"}
        )
