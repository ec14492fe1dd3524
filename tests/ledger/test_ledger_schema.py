"""The ledger's schema grows in place: a ledger made before `usage_estimated` existed gets the
column at start-up (SQLite and PostgreSQL), its old rows read as reported usage."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select, text
from voicetrace.service.ledger import LedgerEntry, LedgerStore
from voicetrace.service.ledger.tables import usage_ledger
from voicetrace.service.sessions.db import Database

from tests.ledger.conftest import UTC_ZONE, entry, turn


def _table(db: Database) -> str:
    return "usage_ledger" if db.schema is None else f'"{db.schema}".usage_ledger'


async def _flags(db: Database) -> dict[int, tuple[bool, bool]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(
                usage_ledger.c.turn, usage_ledger.c.usage_received, usage_ledger.c.usage_estimated
            )
        )
        return {r.turn: (bool(r.usage_received), bool(r.usage_estimated)) for r in rows}


def _estimated(e: LedgerEntry) -> LedgerEntry:
    return dataclasses.replace(e, usage_received=False, usage_estimated=True)


async def test_an_older_ledger_gets_the_usage_estimated_column_at_start_up(
    ledger_db: Database,
) -> None:
    store = LedgerStore(ledger_db)
    assert await store.write([entry("s1", 1)]) == 1
    async with ledger_db.engine.begin() as conn:  # the ledger as an older release made it
        await conn.execute(text(f"ALTER TABLE {_table(ledger_db)} DROP COLUMN usage_estimated"))
    await store.create_schema()
    assert await _flags(ledger_db) == {1: (True, False)}
    assert await store.write([_estimated(entry("s1", 2))]) == 1
    assert await _flags(ledger_db) == {1: (True, False), 2: (False, True)}
    await store.create_schema()  # idempotent
    assert await _flags(ledger_db) == {1: (True, False), 2: (False, True)}


async def test_a_settled_estimate_is_recorded_flagged_with_its_tokens(ledger_db: Database) -> None:
    summary = dataclasses.replace(turn(1), usage_received=False, usage_estimated=True)
    e = LedgerEntry.from_turn(
        summary,
        session_id="s2",
        user_id="alice",
        model="gemini-3.8-live",
        price_model="gemini-3.8-live",
        cost_estimated=False,
        tz=UTC_ZONE,
    )
    store = LedgerStore(ledger_db)
    assert await store.write([e]) == 1
    assert await _flags(ledger_db) == {1: (False, True)}
    (row,) = await store.costs([])
    assert row.usage.input_tokens == summary.input_tokens and row.usage.turns == 1
