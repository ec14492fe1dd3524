"""Ledger fixtures on a real database: a fresh SQLite file, and PostgreSQL in a schema of its own
(dropped afterwards) when `TEST_DATABASE_URL` is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from voicetrace.service.ledger import LedgerEntry, LedgerStore
from voicetrace.service.sessions.db import Database
from voicetrace.telemetry import TurnSummary

PG_ENV = "TEST_DATABASE_URL"
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    else:
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
        db = Database(url, schema=f"vt_ledger_{uuid.uuid4().hex[:16]}")
    await db.create_schema()
    await LedgerStore(db).create_schema()
    try:
        yield db
    finally:
        if not db.is_sqlite:
            await db.drop_schema()
        await db.dispose()


@pytest.fixture
def ledger_store(ledger_db: Database) -> LedgerStore:
    return LedgerStore(ledger_db)


def turn(number: int, *, cost: str | None = "0.00123456789", tokens: int = 100) -> TurnSummary:
    return TurnSummary(
        number=number,
        end_reason="completed",
        trigger="user_text",
        user_speech_ms=0.0,
        endpointing_ms=0.0,
        response_ms=10.0,
        total_ms=10.0,
        ttfa_ms=5.0,
        tool_ms=0.0,
        input_tokens=tokens,
        output_tokens=tokens // 2,
        tokens_by_modality={"input_text": tokens, "output_audio": tokens // 2},
        cost_usd=None if cost is None else Decimal(cost),
        audio_in_ms=1500.0,
        audio_out_ms=2500.25,
        usage_received=cost is not None,
    )


def entry(
    session: str,
    number: int,
    user: str = "alice",
    *,
    model: str = "gemini-3.8-live",
    at: datetime | None = None,
    **kw: object,
) -> LedgerEntry:
    return LedgerEntry.from_turn(
        turn(number, **kw),  # type: ignore[arg-type]
        session_id=session,
        user_id=user,
        model=model,
        price_model=model,
        cost_estimated=False,
        tz=UTC_ZONE,
        now=at or datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    )
