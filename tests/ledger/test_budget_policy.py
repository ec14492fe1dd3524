"""`BudgetPolicy` reads: ledger row + this process's unwritten usage, each turn counted once
whether or not it is written yet; limits = admin's or the default, lowered by the session."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from voicetrace.service.ledger import LedgerStore, LedgerWriter
from voicetrace.service.ledger.store import UserLimits
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.schemas import Budgets
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget import BudgetMetric
from voicetrace.service.voice.budget_policy import BudgetPolicy

from tests.ledger.conftest import entry

COST = Decimal("0.00123456789")


def _today_entry(policy: BudgetPolicy, session: str, n: int, user: str = "alice"):
    from datetime import UTC, datetime

    return entry(session, n, user, at=datetime.now(UTC))


async def test_usage_counts_once_before_during_and_after_its_write(
    ledger_store: LedgerStore,
) -> None:
    writer = LedgerWriter(ledger_store)
    policy = BudgetPolicy(ledger_store, writer, Settings(daily_budget_usd=Decimal(1)), None)
    for n in (1, 2, 3):
        writer.record(_today_entry(policy, "s", n))
    before = await policy.status("alice")  # nothing written yet: all pending
    assert before.used[BudgetMetric.USD] == 3 * COST
    writer.start()
    try:
        status = await policy.status("alice")  # racing the writer
        assert status.used[BudgetMetric.USD] == 3 * COST
        assert await writer.flush(5.0)
        after = await policy.status("alice")
        assert after.used[BudgetMetric.USD] == 3 * COST
        assert after.remaining(BudgetMetric.USD) == 1 - 3 * COST
    finally:
        await writer.stop(1.0)


async def test_admin_limit_replaces_the_default_and_a_session_can_only_lower_it(
    ledger_store: LedgerStore,
) -> None:
    writer = LedgerWriter(ledger_store)
    settings = Settings(daily_budget_usd=Decimal(1), daily_budget_audio_minutes=10.0)
    policy = BudgetPolicy(ledger_store, writer, settings, None)
    await ledger_store.set_user_limits("alice", UserLimits(usd_pusd=5 * 10**12), "ops")
    status = await policy.status("alice", Budgets(daily_audio_minutes=20.0))
    assert status.limits[BudgetMetric.USD] == 5  # the admin raised it
    assert status.limits[BudgetMetric.AUDIO_MINUTES] == 10  # a session cannot raise it
    lowered = await policy.status("alice", Budgets(daily_usd=Decimal("0.5")))
    assert lowered.limits[BudgetMetric.USD] == Decimal("0.5")
    assert (await policy.status("bob")).limits[BudgetMetric.USD] == 1


async def test_a_database_outage_decides_from_the_last_read_and_the_pending(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    store = LedgerStore(db)
    await store.create_schema()
    writer = LedgerWriter(store)
    policy = BudgetPolicy(store, writer, Settings(daily_budget_usd=Decimal(1)), None)
    writer.start()
    try:
        writer.record(_today_entry(policy, "s", 1))
        assert await writer.flush(5.0)
        assert (await policy.status("alice")).used[BudgetMetric.USD] == COST
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_daily RENAME TO usage_daily_away"))
            await conn.execute(text("ALTER TABLE usage_ledger RENAME TO usage_ledger_away"))
        writer.record(_today_entry(policy, "s", 2))
        status = await policy.status("alice")  # reads fail: last known + pending
        assert status.used[BudgetMetric.USD] == 2 * COST
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_daily_away RENAME TO usage_daily"))
            await conn.execute(text("ALTER TABLE usage_ledger_away RENAME TO usage_ledger"))
        await writer.stop(5.0)
        await db.dispose()


def test_the_token_command_mints_an_admin_token(capsys, monkeypatch) -> None:
    from voicetrace.service.api.auth import verify_principal
    from voicetrace.service.cli import main
    from voicetrace.service.settings import DEV_JWT_SECRET

    assert main(["token", "--user", "ops", "--role", "admin"]) == 0
    principal = verify_principal(capsys.readouterr().out.strip(), DEV_JWT_SECRET)
    assert principal.user_id == "ops" and principal.is_admin
    assert main(["token", "--user", "bob"]) == 0
    assert not verify_principal(capsys.readouterr().out.strip(), DEV_JWT_SECRET).is_admin


def test_only_a_list_roles_claim_makes_an_admin() -> None:
    from datetime import UTC, datetime, timedelta

    import jwt
    from voicetrace.service.api.auth import verify_principal

    secret = "s" * 32
    now = datetime.now(UTC)
    base = {"sub": "eve", "iat": now, "exp": now + timedelta(minutes=5)}
    for roles, admin in (("admin", False), (["admin"], True), ([1, "x"], False), (None, False)):
        token = jwt.encode({**base, "roles": roles}, secret, algorithm="HS256")
        assert verify_principal(token, secret).is_admin is admin, roles


async def test_projections_of_one_metric_never_queue_behind_a_slow_read(
    ledger_store: LedgerStore,
) -> None:
    """While one projection waits for the database (here: the writer's lock is held), the
    frames that come meanwhile are answered at once instead of queueing reads behind it."""
    import asyncio

    from voicetrace.service.voice.budget_policy import SessionAccounts

    writer = LedgerWriter(ledger_store)
    policy = BudgetPolicy(ledger_store, writer, Settings(daily_budget_screen_tokens=100), None)
    accounts = SessionAccounts(policy, "s", "alice", "gemini-3.8-live", None, False)
    async with writer.lock:  # the slow read
        first = asyncio.create_task(accounts.projected(BudgetMetric.SCREEN_TOKENS, Decimal(500)))
        await asyncio.sleep(0.05)
        assert not first.done()
        meanwhile = [
            await asyncio.wait_for(
                accounts.projected(BudgetMetric.SCREEN_TOKENS, Decimal(600)), 0.5
            )
            for _ in range(3)
        ]
        assert meanwhile == [None, None, None]
        other = asyncio.create_task(accounts.projected(BudgetMetric.VIDEO_TOKENS, Decimal(1)))
        await asyncio.sleep(0.05)
        assert not other.done()  # another metric has its own read
    check = await first
    assert check is not None and check.exhausted and check.used == 500
    assert await other is None  # no camera limit
    assert await accounts.projected(BudgetMetric.SCREEN_TOKENS, Decimal(700)) is not None
