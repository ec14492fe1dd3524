"""`LedgerStore`: the ledger's SQL — exactly-once inserts, atomic daily increments, reports.

A batch is one transaction. Each generation is `INSERT … ON CONFLICT (session_id, turn) DO
NOTHING RETURNING pk`; only when that inserted a row is the user's day incremented with
`INSERT … ON CONFLICT (user_id, day) DO UPDATE SET x = usage_daily.x + excluded.x`. The database
does the addition, so two replicas settling turns of one user at once never lose an increment,
and a replayed batch (a retry after a timeout whose commit did succeed) adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.ledger.entry import LedgerEntry, Usage
from voicetrace.service.ledger.tables import SUM_COLUMNS, metadata, usage_daily, usage_ledger
from voicetrace.service.ledger.tables import user_budgets as ub
from voicetrace.service.sessions.db import Database, add_missing_columns


class GroupBy(StrEnum):
    USER = "user"
    DAY = "day"
    MODEL = "model"


_GROUP_COLUMN = {
    GroupBy.USER: usage_ledger.c.user_id,
    GroupBy.DAY: usage_ledger.c.day,
    GroupBy.MODEL: usage_ledger.c.model,
}


@dataclass(frozen=True, slots=True)
class CostRow:
    """One group of `/costs`: the group's keys (user/day/model as asked) and its totals."""

    keys: dict[GroupBy, str]
    usage: Usage


@dataclass(frozen=True, slots=True)
class UserLimits:
    """An admin's per-user daily limits (None: the settings default applies)."""

    usd_pusd: int | None = None
    audio_minutes: float | None = None
    video_tokens: int | None = None
    screen_tokens: int | None = None


class LedgerStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if not db.is_sqlite else sqlite.insert

    async def create_schema(self) -> None:
        async with self.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(add_missing_columns, self.db.schema, metadata)

    async def write(self, entries: Sequence[LedgerEntry]) -> int:
        """Record `entries` in one transaction; how many were new (the rest were replays).

        Two statements whatever the batch size: one multi-row insert that skips known
        generations and returns the new ones, then one multi-row upsert of the new ones'
        per-(user, day) sums."""
        if not entries:
            return 0
        unique = list({(e.session_id, e.turn): e for e in entries}.values())
        async with self.db.engine.begin() as conn:
            new = await self._insert_new(conn, unique)
            if new:
                await self._increment_days(
                    conn, [e for e in unique if (e.session_id, e.turn) in new]
                )
        return len(new)

    async def _insert_new(
        self, conn: AsyncConnection, entries: Sequence[LedgerEntry]
    ) -> set[tuple[str, int]]:
        stmt = (
            self._insert(usage_ledger)
            .values([e.row() for e in entries])
            .on_conflict_do_nothing(index_elements=["session_id", "turn"])
            .returning(usage_ledger.c.session_id, usage_ledger.c.turn)
        )
        return {(row[0], row[1]) for row in (await conn.execute(stmt)).all()}

    async def _increment_days(self, conn: AsyncConnection, entries: Sequence[LedgerEntry]) -> None:
        days: dict[tuple[str, date], Usage] = {}
        for entry in entries:
            days.setdefault((entry.user_id, entry.day), Usage()).add(entry.usage)
        # Sorted: concurrent replicas lock the same daily rows in the same order (no deadlock).
        rows = [
            {"user_id": user, "day": day, **usage.as_columns()}
            for (user, day), usage in sorted(days.items())
        ]
        stmt = self._insert(usage_daily).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "day"],
            set_={name: usage_daily.c[name] + stmt.excluded[name] for name in SUM_COLUMNS},
        )
        await conn.execute(stmt)

    # -- reads ------------------------------------------------------------------------------
    async def daily(self, user_id: str, day: date) -> Usage:
        """The user's totals for `day` (zero when nothing was recorded)."""
        async with self.db.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(usage_daily).where(
                            usage_daily.c.user_id == user_id, usage_daily.c.day == day
                        )
                    )
                )
                .mappings()
                .first()
            )
        return Usage() if row is None else Usage.from_row(row)

    async def costs(
        self,
        group_by: Iterable[GroupBy],
        *,
        user_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> list[CostRow]:
        """Totals from the per-generation rows, grouped; `start`/`end` are inclusive days."""
        groups = list(dict.fromkeys(group_by))
        cols = [_GROUP_COLUMN[g].label(g.value) for g in groups]
        sums = [func.coalesce(func.sum(usage_ledger.c[n]), 0).label(n) for n in SUM_COLUMNS]
        query = select(*cols, *sums)
        if user_id is not None:
            query = query.where(usage_ledger.c.user_id == user_id)
        if start is not None:
            query = query.where(usage_ledger.c.day >= start)
        if end is not None:
            query = query.where(usage_ledger.c.day <= end)
        if groups:
            query = query.group_by(*cols).order_by(*cols)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = []
        for row in rows:
            usage = Usage.from_row(row)
            if not groups and usage.turns == 0:
                continue  # nothing at all: no empty total row
            out.append(CostRow({g: str(row[g.value]) for g in groups}, usage))
        return out

    async def lag(self) -> dict[str, Any]:
        """Rows and the newest settlement time (for health)."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.max(usage_ledger.c.settled_at)).select_from(
                        usage_ledger
                    )
                )
            ).first()
        count, newest = (row[0], row[1]) if row is not None else (0, None)
        if isinstance(newest, str):  # SQLite returns text from an aggregate
            newest = datetime.fromisoformat(newest)
        if isinstance(newest, datetime) and newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)
        return {"rows": int(count or 0), "newest_settled_at": newest}

    # -- per-user limits ------------------------------------------------------------------------
    async def user_limits(self, user_id: str) -> UserLimits:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(ub).where(ub.c.user_id == user_id))).mappings().first()
        if row is None:
            return UserLimits()
        return UserLimits(
            row["daily_usd_pusd"],
            row["daily_audio_minutes"],
            row["daily_video_tokens"],
            row["daily_screen_tokens"],
        )

    async def set_user_limits(self, user_id: str, limits: UserLimits, by: str) -> None:
        values = {
            "daily_usd_pusd": limits.usd_pusd,
            "daily_audio_minutes": limits.audio_minutes,
            "daily_video_tokens": limits.video_tokens,
            "daily_screen_tokens": limits.screen_tokens,
            "updated_by": by,
            "updated_at": datetime.now(UTC),
        }
        stmt = self._insert(ub).values(user_id=user_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_=values)
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt)
