"""The ledger's SQL: each generation once, daily totals that only ever add, exact money."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from voicetrace.service.ledger import LedgerEntry, LedgerStore
from voicetrace.service.ledger.store import GroupBy, UserLimits

from tests.ledger.conftest import entry, turn

DAY = date(2026, 12, 1)


async def test_a_replayed_generation_is_recorded_once(ledger_store: LedgerStore) -> None:
    first = [entry("s1", 1), entry("s1", 2)]
    assert await ledger_store.write(first) == 2
    assert await ledger_store.write([entry("s1", 2), entry("s1", 3)]) == 1  # 2 is a replay
    daily = await ledger_store.daily("alice", DAY)
    assert daily.turns == 3
    assert daily.cost_usd == 3 * Decimal("0.00123456789")  # exact, sub-micro-dollar digits kept
    assert daily.input_tokens == 300 and daily.input_text == 300 and daily.output_audio == 150


async def test_daily_totals_equal_the_sum_of_the_generations(ledger_store: LedgerStore) -> None:
    await ledger_store.write([entry("s1", n, tokens=n * 10) for n in range(1, 6)])
    await ledger_store.write([entry("s2", 1, user="bob"), entry("s2", 2, user="bob", cost=None)])
    (total,) = await ledger_store.costs([], user_id="alice")
    daily = await ledger_store.daily("alice", DAY)
    assert total.usage == daily
    assert daily.input_tokens == 150
    bob = await ledger_store.daily("bob", DAY)
    assert bob.turns == 2 and bob.cost_usd == Decimal("0.00123456789")  # unknown cost adds 0


async def test_concurrent_writers_never_lose_an_increment(ledger_store: LedgerStore) -> None:
    # Many transactions on one user's day at once: the database does each addition.
    writers = [ledger_store.write([entry(f"s{i}", n) for n in (1, 2)]) for i in range(20)]
    assert sum(await asyncio.gather(*writers)) == 40
    daily = await ledger_store.daily("alice", DAY)
    assert daily.turns == 40 and daily.cost_usd == 40 * Decimal("0.00123456789")


async def test_the_day_is_the_configured_time_zone_s(ledger_store: LedgerStore) -> None:
    late_utc = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # already Dec 2 in Tokyo
    tokyo = LedgerEntry.from_turn(
        turn(1),
        session_id="tz",
        user_id="alice",
        model="m",
        price_model="m",
        cost_estimated=False,
        tz=ZoneInfo("Asia/Tokyo"),
        now=late_utc,
    )
    assert tokyo.day == date(2026, 12, 2)
    await ledger_store.write([tokyo])
    assert (await ledger_store.daily("alice", date(2026, 12, 2))).turns == 1
    assert (await ledger_store.daily("alice", DAY)).turns == 0


async def test_costs_group_by_user_day_and_model(ledger_store: LedgerStore) -> None:
    await ledger_store.write(
        [
            entry("a", 1),
            entry("a", 2, model="gemini-2.0-flash-live-001"),
            entry("b", 1, user="bob"),
            entry("c", 1, at=datetime(2026, 12, 3, 8, tzinfo=UTC)),
        ]
    )
    rows = await ledger_store.costs([GroupBy.USER, GroupBy.MODEL])
    keys = [(r.keys[GroupBy.USER], r.keys[GroupBy.MODEL], r.usage.turns) for r in rows]
    assert keys == [
        ("alice", "gemini-2.0-flash-live-001", 1),
        ("alice", "gemini-3.8-live", 2),
        ("bob", "gemini-3.8-live", 1),
    ]
    by_day = await ledger_store.costs([GroupBy.DAY], user_id="alice", start=date(2026, 12, 2))
    assert [(r.keys[GroupBy.DAY], r.usage.turns) for r in by_day] == [("2026-12-03", 1)]
    assert await ledger_store.costs([GroupBy.DAY], end=date(2026, 11, 30)) == []


async def test_user_limits_are_upserted(ledger_store: LedgerStore) -> None:
    assert await ledger_store.user_limits("alice") == UserLimits()
    await ledger_store.set_user_limits("alice", UserLimits(usd_pusd=5, audio_minutes=1.5), "root")
    await ledger_store.set_user_limits("alice", UserLimits(video_tokens=9), "root")
    assert await ledger_store.user_limits("alice") == UserLimits(video_tokens=9)
