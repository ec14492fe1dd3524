"""The background writer: usage reaches the database off the voice path, survives an outage
from a bounded buffer, and the overflow is counted, never hidden."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from sqlalchemy import text
from voicetrace.service.ledger import LedgerStore, LedgerWriter
from voicetrace.service.sessions.db import Database

from tests.ledger.conftest import entry

DAY = date(2026, 12, 1)


async def test_recorded_usage_is_written_in_the_background(ledger_store: LedgerStore) -> None:
    writer = LedgerWriter(ledger_store)
    writer.start()
    try:
        for n in range(1, 51):
            assert writer.record(entry("s", n)) is True
        assert writer.pending("alice", DAY).turns == 50  # budgets see it before the write
        assert await writer.flush(5.0)
        assert (await ledger_store.daily("alice", DAY)).turns == 50
        assert writer.pending("alice", DAY).turns == 0
        health = writer.health()
        assert health["written"] == 50 and health["buffered"] == 0 and health["overflow"] == 0
    finally:
        await writer.stop(1.0)


async def test_a_database_outage_delays_usage_but_loses_none(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}")
    store = LedgerStore(db)
    await store.create_schema()
    writer = LedgerWriter(store)
    writer.start()
    try:
        async with db.engine.begin() as conn:  # the table vanishes: every write fails
            await conn.execute(text("ALTER TABLE usage_ledger RENAME TO usage_ledger_away"))
        for n in range(1, 11):
            writer.record(entry("s", n))
        assert not await writer.flush(0.5)
        health = writer.health()
        assert health["write_failures"] >= 1 and health["buffered"] == 10
        assert health["last_error"] is not None and health["lag_s"] > 0
        assert writer.pending("alice", DAY).turns == 10
        async with db.engine.begin() as conn:  # the database is back
            await conn.execute(text("ALTER TABLE usage_ledger_away RENAME TO usage_ledger"))
        assert await writer.flush(10.0)
        assert (await store.daily("alice", DAY)).turns == 10
        assert writer.health()["written"] == 10
    finally:
        await writer.stop(1.0)
        await db.dispose()


async def test_a_full_buffer_refuses_and_counts_the_overflow(ledger_store: LedgerStore) -> None:
    writer = LedgerWriter(ledger_store, max_buffer=3)  # not started: nothing drains
    accepted = [writer.record(entry("s", n)) for n in range(1, 6)]
    assert accepted == [True, True, True, False, False]
    assert writer.health()["overflow"] == 2 and writer.health()["buffered"] == 3
    writer.start()
    try:
        assert await writer.flush(5.0)
        assert (await ledger_store.daily("alice", DAY)).turns == 3
    finally:
        await writer.stop(1.0)


async def test_stop_writes_what_is_buffered(ledger_store: LedgerStore) -> None:
    writer = LedgerWriter(ledger_store, batch=2)
    writer.start()
    for n in range(1, 8):
        writer.record(entry("s", n))
    await asyncio.sleep(0)
    await writer.stop(5.0)
    assert (await ledger_store.daily("alice", DAY)).turns == 7
