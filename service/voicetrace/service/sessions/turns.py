"""Settled-turn usage: one `session_turns` row per turn plus the session's running totals.

The turn row and the increments are one transaction, and the row's primary key (session, number)
makes a retried write a no-op — so a crash loses at most the turn in flight, and no turn is ever
counted twice. Totals are SQL increments (`SET cost_usd = cost_usd + ?`): two writers can never
lose each other's update, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import NotFound
from voicetrace.service.sessions.models import live_sessions as t
from voicetrace.service.sessions.models import session_turns as turns_t
from voicetrace.service.sessions.rows import exhausted_session_budget, to_session
from voicetrace.service.sessions.schemas import MAX_TOKENS, LiveSession

MAX_TURN_USD = Decimal(1_000_000)
MAX_TURN_AUDIO_S = 86_400.0


def _is_count(value: object, high: int) -> bool:
    # bool is an int subclass; `True` tokens would be a silent 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_TURN_AUDIO_S
    )


@dataclass(frozen=True, slots=True)
class SettledTurn:
    number: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    audio_in_s: float
    audio_out_s: float
    tokens_by_modality: dict[str, int]
    camera_tokens: int = 0  # image input tokens by source (telemetry.frames)
    screen_tokens: int = 0

    @classmethod
    def checked(
        cls,
        number: int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: Decimal,
        audio_in_s: float,
        audio_out_s: float,
        tokens_by_modality: Mapping[str, int],
        camera_tokens: int = 0,
        screen_tokens: int = 0,
    ) -> SettledTurn:
        """Validate like an API boundary: usage is billing data, garbage must never land."""
        if not _is_count(number, 2**31 - 1):
            raise ValueError("turn number must be an integer in [0, 2**31)")
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if not _is_count(value, MAX_TOKENS):
                raise ValueError(f"{name} must be an integer in [0, {MAX_TOKENS}]")
        if not isinstance(cost_usd, Decimal) or not cost_usd.is_finite():
            raise ValueError("cost_usd must be a finite Decimal")
        if not 0 <= cost_usd <= MAX_TURN_USD:
            raise ValueError(f"cost_usd must be in [0, {MAX_TURN_USD}]")
        for name, seconds in (("audio_in_s", audio_in_s), ("audio_out_s", audio_out_s)):
            if not _is_seconds(seconds):
                raise ValueError(f"{name} must be finite seconds in [0, {MAX_TURN_AUDIO_S:g}]")
        for name, value in (("camera_tokens", camera_tokens), ("screen_tokens", screen_tokens)):
            if not _is_count(value, MAX_TOKENS):
                raise ValueError(f"{name} must be an integer in [0, {MAX_TOKENS}]")
        modalities: dict[str, int] = {}
        for key, count in tokens_by_modality.items():
            if not isinstance(key, str) or not 0 < len(key) <= 64:
                raise ValueError("tokens_by_modality keys must be short strings")
            if not _is_count(count, MAX_TOKENS):
                raise ValueError(f"tokens_by_modality[{key!r}] must be an integer >= 0")
            modalities[key] = count
        return cls(
            number, input_tokens, output_tokens, cost_usd, float(audio_in_s), float(audio_out_s),
            modalities, camera_tokens, screen_tokens,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TurnRecorded:
    """`recorded` is False when this turn was already stored (a retry: nothing was added).
    `budget_exhausted` names a session budget the totals have now used up (the bridge should
    `pause_for_budget`); the store has already flagged it, so resume is refused."""

    recorded: bool
    session: LiveSession
    budget_exhausted: str | None


def _insert_turn(db: Database, values: dict[str, Any]) -> Any:
    dialect = sqlite if db.is_sqlite else postgresql
    return dialect.insert(turns_t).values(values).on_conflict_do_nothing()


async def record(db: Database, session_id: str, turn: SettledTurn, now: datetime) -> TurnRecorded:
    values = {
        "session_id": session_id,
        "number": turn.number,
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "cost_usd": turn.cost_usd,
        "audio_in_s": turn.audio_in_s,
        "audio_out_s": turn.audio_out_s,
        "tokens_by_modality": turn.tokens_by_modality,
        "recorded_at": now,
    }
    minutes = (turn.audio_in_s + turn.audio_out_s) / 60

    async def apply(conn: AsyncConnection) -> tuple[bool, RowMapping | None]:
        exists = select(t.c.pk).where(t.c.id == session_id)
        if (await conn.execute(exists)).first() is None:
            return False, None
        inserted = (await conn.execute(_insert_turn(db, values))).rowcount == 1
        if not inserted:  # already recorded: a retry, add nothing
            row = (await conn.execute(select(t).where(t.c.id == session_id))).mappings().one()
            return False, row
        totals = (
            update(t)
            .where(t.c.id == session_id)
            .values(
                turns_settled=t.c.turns_settled + 1,
                input_tokens=t.c.input_tokens + turn.input_tokens,
                output_tokens=t.c.output_tokens + turn.output_tokens,
                cost_usd=t.c.cost_usd + turn.cost_usd,
                audio_in_s=t.c.audio_in_s + turn.audio_in_s,
                audio_out_s=t.c.audio_out_s + turn.audio_out_s,
                audio_minutes_used=t.c.audio_minutes_used + minutes,
                camera_tokens=t.c.camera_tokens + turn.camera_tokens,
                screen_tokens=t.c.screen_tokens + turn.screen_tokens,
                updated_at=now,
            )
            .returning(*t.c)
        )
        row = (await conn.execute(totals)).mappings().one()
        budget = exhausted_session_budget(row)
        if budget is not None and row["budget_exhausted"] is None:
            flag = update(t).where(t.c.id == session_id).values(budget_exhausted=budget)
            row = (await conn.execute(flag.returning(*t.c))).mappings().one()
        return True, row

    recorded, row = await db.write(apply)
    if row is None:
        raise NotFound()
    budget = exhausted_session_budget(row)
    return TurnRecorded(recorded, to_session(row), budget)


async def summary_from_turns(
    conn: AsyncConnection, row: RowMapping, end_reason: str
) -> dict[str, Any]:
    """The summary a crashed bridge never wrote, rebuilt from the recorded turns and totals
    (same keys as the telemetry's `SessionSummary`, plus `recovered: true`)."""
    query = select(turns_t.c.tokens_by_modality).where(turns_t.c.session_id == row["id"])
    by_modality: dict[str, int] = {}
    for (counts,) in (await conn.execute(query)).all():
        for key, value in (counts or {}).items():
            by_modality[key] = by_modality.get(key, 0) + int(value)
    audio_in, audio_out = float(row["audio_in_s"]), float(row["audio_out_s"])
    return {
        "session_id": row["id"],
        "end_reason": end_reason,
        "turns": int(row["turns_settled"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "tokens_by_modality": by_modality,
        "cost_usd": Decimal(row["cost_usd"]),
        "audio_in_s": audio_in,
        "audio_out_s": audio_out,
        "audio_minutes": (audio_in + audio_out) / 60,
        "recovered": True,
    }
