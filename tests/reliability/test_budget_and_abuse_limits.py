"""Budget and abuse limits the store enforces: resume refused while a budget is exhausted, `0`
means zero, per-user caps on open and live sessions (race-free), CONNECTING sessions expire."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import (
    BudgetExhausted,
    ConnectTimedOut,
    SessionLimitExceeded,
)
from voicetrace.service.sessions.leases import CONNECT_TIMEOUT_REASON
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.schemas import Budgets, SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

from tests.api.conftest import Api

S = SessionState


def limited(database: Database, *, live: int = 3, open_: int = 3, **kw: object) -> SessionStore:
    return SessionStore(
        database, policy=SessionPolicy(max_live_per_user=live, max_open_per_user=open_), **kw
    )


async def connect(store: SessionStore, session_id: str, user: str = "alice") -> None:
    await store.transition(session_id, user, S.LIVE, only_from={S.CONNECTING})


# -- budgets ----------------------------------------------------------------------------------


async def test_resume_is_refused_while_a_budget_is_exhausted(store: SessionStore) -> None:
    session = await store.create("alice", SessionCreate(budgets=Budgets(session_usd=Decimal(1))))
    await connect(store, session.id)
    paused = await store.pause_for_budget(session.id, "alice", "session_usd")
    assert paused.state is S.PAUSED and paused.state_reason == "budget_exhausted"
    assert paused.budget_exhausted == "session_usd"
    with pytest.raises(BudgetExhausted) as refused:
        await store.transition(session.id, "alice", S.LIVE, only_from={S.PAUSED})
    assert refused.value.budget == "session_usd" and "session_usd" in refused.value.message
    assert (await store.get(session.id, "alice")).state is S.PAUSED


async def test_rest_resume_of_an_exhausted_session_is_a_409_naming_the_budget(api: Api) -> None:
    session = await api.create(budgets={"session_audio_minutes": 1})
    await api.store.transition(session["id"], "alice", S.LIVE)
    await api.store.pause_for_budget(session["id"], "alice", "session_audio_minutes")
    response = await api.request("PUT", f"/live-sessions/{session['id']}/resume")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "budget_exhausted" and detail["budget"] == "session_audio_minutes"
    assert api.listener.changes == []


async def test_raising_the_exhausted_budget_allows_resume_again(api: Api) -> None:
    session = await api.create(budgets={"session_usd": 0.001})
    sid = session["id"]
    await api.store.transition(sid, "alice", S.LIVE)
    turn = await api.store.record_turn(sid, 1, 10, 10, Decimal("0.002"), 1.0, 1.0, {})
    assert turn.budget_exhausted == "session_usd"  # the store saw it from the recorded usage
    await api.store.pause_for_budget(sid, "alice", "session_usd")
    # Raising it, but not above what was used, keeps it exhausted.
    still = await api.request(
        "PATCH", f"/live-sessions/{sid}", json={"budgets": {"session_usd": 0.0015}}
    )
    assert still.json()["budget_exhausted"] == "session_usd"
    assert (await api.request("PUT", f"/live-sessions/{sid}/resume")).status_code == 409
    raised = await api.request(
        "PATCH", f"/live-sessions/{sid}", json={"budgets": {"session_usd": 1}}
    )
    assert raised.status_code == 200 and raised.json()["budget_exhausted"] is None
    resumed = await api.request("PUT", f"/live-sessions/{sid}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "LIVE"


@pytest.mark.parametrize("budget", ["session_usd", "session_audio_minutes"])
async def test_a_zero_budget_means_zero_not_unlimited(store: SessionStore, budget: str) -> None:
    session = await store.create("alice", SessionCreate(budgets=Budgets(**{budget: 0})))
    assert session.budget_exhausted == budget
    with pytest.raises(BudgetExhausted):
        await connect(store, session.id)
    assert (await store.get(session.id, "alice")).state is S.CONNECTING


async def test_patching_a_live_sessions_budget_to_zero_exhausts_it(store: SessionStore) -> None:
    session = await store.create("alice", SessionCreate())
    await connect(store, session.id)
    patched = await store.update(
        session.id, "alice", SessionUpdate(budgets=Budgets(session_usd=Decimal(0)))
    )
    assert patched.budget_exhausted == "session_usd"
    cleared = await store.update(
        session.id, "alice", SessionUpdate(budgets=Budgets(session_usd=None))
    )
    assert cleared.budget_exhausted is None


async def test_a_daily_budget_flag_set_by_the_bridge_survives_unrelated_patches(
    store: SessionStore,
) -> None:
    session = await store.create("alice", SessionCreate(budgets=Budgets(daily_usd=Decimal(1))))
    await connect(store, session.id)
    await store.pause_for_budget(session.id, "alice", "daily_usd")
    patched = await store.update(
        session.id, "alice", SessionUpdate(budgets=Budgets(session_audio_minutes=5))
    )
    assert patched.budget_exhausted == "daily_usd"
    with pytest.raises(ValueError, match="unknown budget"):
        await store.pause_for_budget(session.id, "alice", "everything")


# -- per-user caps ----------------------------------------------------------------------------


async def test_open_sessions_per_user_are_capped_with_a_clear_429(
    database: Database, api: Api
) -> None:
    api.store.policy = SessionPolicy(max_open_per_user=2)  # this test's store only
    first = await api.create("alice")
    await api.create("alice")
    refused = await api.request("POST", "/live-sessions", "alice", json={})
    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    assert detail["code"] == "too_many_open_sessions" and detail["limit"] == 2
    assert "at most 2" in detail["message"]
    await api.create("bob")  # other users are not affected
    await api.request("DELETE", f"/live-sessions/{first['id']}")
    await api.create("alice")  # ending one frees a slot


async def test_concurrent_creates_never_exceed_the_open_cap(database: Database) -> None:
    store = limited(database, open_=5)
    results = await asyncio.gather(
        *(store.create("alice", SessionCreate()) for _ in range(20)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SessionLimitExceeded)]
    assert len(created) == 5 and len(refused) == 15


async def test_concurrent_connects_never_exceed_the_live_cap(database: Database) -> None:
    store = limited(database, live=3, open_=20)
    sessions = [await store.create("alice", SessionCreate()) for _ in range(12)]
    results = await asyncio.gather(
        *(connect(store, s.id) for s in sessions), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, SessionLimitExceeded)]
    assert len(refused) == 9 and all(r.code == "too_many_live_sessions" for r in refused)
    live = await store.list("alice", state=S.LIVE)
    assert len(live) == 3
    # A PAUSED session still holds a bridge: it counts.
    await store.transition(live[0].id, "alice", S.PAUSED)
    with pytest.raises(SessionLimitExceeded):
        await connect(store, sessions[-1].id)
    await store.end(live[0].id, "alice", "completed")
    await connect(store, sessions[-1].id)


# -- CONNECTING expiry ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_never_connected_sessions_expire_as_connect_timeout(database: Database) -> None:
    clock = Clock()
    store = limited(database, open_=2, clock=clock)
    stale = await store.create("alice", SessionCreate())
    clock.now += timedelta(seconds=store.policy.connect_timeout_s - 1)
    fresh = await store.create("alice", SessionCreate())
    assert await store.sweep() == 0
    clock.now += timedelta(seconds=2)
    assert store.connect_expired(await store.get(stale.id, "alice"))
    assert await store.sweep() == 1
    expired = await store.get(stale.id, "alice")
    assert expired.state is S.ENDED and expired.end_reason == CONNECT_TIMEOUT_REASON
    assert (await store.get(fresh.id, "alice")).state is S.CONNECTING


async def test_connecting_after_the_timeout_is_refused_and_ends_the_session(
    database: Database,
) -> None:
    clock = Clock()
    store = limited(database, clock=clock)
    session = await store.create("alice", SessionCreate())
    clock.now += timedelta(seconds=store.policy.connect_timeout_s + 1)
    with pytest.raises(ConnectTimedOut) as refused:
        await connect(store, session.id)
    assert "connect_timeout" in refused.value.message
    assert (await store.get(session.id, "alice")).end_reason == CONNECT_TIMEOUT_REASON


async def test_expired_sessions_do_not_count_against_the_open_cap(database: Database) -> None:
    clock = Clock()
    store = limited(database, open_=1, clock=clock)
    first = await store.create("alice", SessionCreate())
    with pytest.raises(SessionLimitExceeded):
        await store.create("alice", SessionCreate())
    clock.now += timedelta(seconds=store.policy.connect_timeout_s + 1)
    await store.create("alice", SessionCreate())  # no sweep ran: create expires them itself
    assert (await store.get(first.id, "alice")).end_reason == CONNECT_TIMEOUT_REASON


async def test_create_with_a_zero_budget_over_http_is_exhausted_at_once(api: Api) -> None:
    body = await api.create(budgets={"session_usd": 0})
    assert body["budget_exhausted"] == "session_usd"


async def test_openapi_documents_the_429(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    assert "429" in spec["paths"]["/live-sessions"]["post"]["responses"]
