"""Replica-safe sessions: an owner instance with a lease per session, recovery that ends only what
no live replica serves, and REST control that refuses (409, naming the owner) to act on a session
another live replica is serving. Two stores with different instance ids on one real database play
two replicas; a hand-driven clock moves time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import OwnedElsewhere
from voicetrace.service.sessions.leases import OWNER_LOST_REASON, RECOVERED_REASON
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.schemas import Budgets, SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

from tests.api.conftest import Api, RecordingListener, build_app

S = SessionState
LEASE_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replica(database: Database, name: str, clock: Clock, lease_s: float = LEASE_S) -> SessionStore:
    return SessionStore(
        database, policy=SessionPolicy(instance_id=name, lease_s=lease_s), clock=clock
    )


async def served_by(store: SessionStore, user: str = "alice") -> str:
    """A session whose voice bridge runs on `store`'s instance (CONNECTING → LIVE there)."""
    session = await store.create(user, SessionCreate())
    live = await store.transition(session.id, user, S.LIVE, only_from={S.CONNECTING})
    assert live.owner_instance == store.instance_id
    return session.id


async def test_going_live_records_the_owner_and_a_lease(database: Database, clock: Clock) -> None:
    a = replica(database, "replica-a", clock)
    session = await a.get(await served_by(a), "alice")
    assert session.owner_instance == "replica-a"
    assert session.lease_expires_at == clock.now + timedelta(seconds=LEASE_S)


async def test_a_restarting_replica_never_ends_sessions_another_live_replica_serves(
    database: Database, clock: Clock
) -> None:
    a = replica(database, "replica-a", clock)
    session_id = await served_by(a)
    clock.advance(LEASE_S / 2)
    b = replica(database, "replica-b", clock)  # starting up
    assert await b.recover_after_crash() == 0
    assert await b.sweep() == 0
    assert (await b.get(session_id, "alice")).state is S.LIVE


async def test_heartbeats_keep_a_replicas_sessions_alive_across_many_leases(
    database: Database, clock: Clock
) -> None:
    a, b = replica(database, "replica-a", clock), replica(database, "replica-b", clock)
    session_id = await served_by(a)
    for _ in range(10):  # five leases' worth of time, beating every lease / 3
        clock.advance(a.policy.heartbeat_interval_s)
        assert await a.heartbeat() == 1
        assert await b.sweep() == 0
    assert (await b.get(session_id, "alice")).state is S.LIVE


async def test_a_dead_replicas_sessions_end_once_its_lease_expires_with_a_summary(
    database: Database, clock: Clock
) -> None:
    a, b = replica(database, "replica-a", clock), replica(database, "replica-b", clock)
    session_id = await served_by(a)
    await a.record_turn(session_id, 1, 100, 20, Decimal("0.0021"), 3.0, 1.5, {"AUDIO": 90})
    await a.record_turn(session_id, 2, 150, 30, Decimal("0.0050"), 6.0, 1.5, {"AUDIO": 120})
    clock.advance(LEASE_S - 1)
    assert await b.sweep() == 0  # not yet: A may just be slow
    clock.advance(2)  # A stopped beating (SIGKILL): its lease is over
    assert await b.sweep() == 1
    ended = await b.get(session_id, "alice")
    assert ended.state is S.ENDED and ended.end_reason == OWNER_LOST_REASON
    assert ended.summary is not None and ended.summary["recovered"] is True
    assert ended.summary["turns"] == 2 and ended.summary["cost_usd"] == pytest.approx(0.0071)
    assert ended.summary["tokens_by_modality"] == {"AUDIO": 210}
    assert ended.audio_minutes_used == pytest.approx(12.0 / 60)
    assert await b.sweep() == 0


async def test_the_same_instance_restarted_ends_its_own_sessions_at_once(
    database: Database, clock: Clock
) -> None:
    a = replica(database, "replica-a", clock)
    session_id = await served_by(a)
    await a.record_turn(session_id, 1, 10, 5, Decimal("0.001"), 1.0, 1.0, {})
    restarted = replica(database, "replica-a", clock)  # same stable instance id
    assert await restarted.recover_after_crash() == 1
    ended = await restarted.get(session_id, "alice")
    assert ended.end_reason == RECOVERED_REASON and ended.summary["turns"] == 1


async def test_another_replica_cannot_pause_resume_rebudget_or_end_a_served_session(
    database: Database, clock: Clock
) -> None:
    a, b = replica(database, "replica-a", clock), replica(database, "replica-b", clock)
    session_id = await served_by(a)
    for call in (
        b.transition(session_id, "alice", S.PAUSED, reason="paused_by_user"),
        b.end(session_id, "alice", reason="ended_by_user"),
        b.update(session_id, "alice", SessionUpdate(budgets=Budgets(session_usd=Decimal(1)))),
    ):
        with pytest.raises(OwnedElsewhere) as refused:
            await call
        assert refused.value.owner == "replica-a"
    # Transcripts are plain data: any replica may store them.
    patched = await b.update(session_id, "alice", SessionUpdate(transcript_final="hi"))
    assert patched.transcript_final == "hi" and patched.state is S.LIVE
    # The owner itself may, of course.
    assert (await a.transition(session_id, "alice", S.PAUSED)).state is S.PAUSED


@pytest.fixture
async def api_on_replica_b(database: Database, clock: Clock) -> AsyncIterator[Api]:
    store = replica(database, "replica-b", clock)
    listener = RecordingListener()
    transport = httpx.ASGITransport(app=build_app(store, listener))
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
        yield Api(http, store, listener)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/pause", None),
        ("PUT", "/resume", None),
        ("DELETE", "", None),
        ("PATCH", "", {"budgets": {"session_usd": 2}}),
    ],
)
async def test_rest_control_on_the_wrong_replica_is_a_409_naming_the_owner(
    database: Database, clock: Clock, api_on_replica_b: Api, method: str, path: str, body: object
) -> None:
    a = replica(database, "replica-a", clock)
    session_id = await served_by(a)
    if path == "/resume":
        await a.transition(session_id, "alice", S.PAUSED)
    response = await api_on_replica_b.request(
        method, f"/live-sessions/{session_id}{path}", json=body
    )
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "owned_by_other_instance" and detail["owner"] == "replica-a"
    assert "replica-a" in detail["message"] and detail["lease_expires_at"]
    assert api_on_replica_b.listener.changes == []  # nothing changed, nobody was told


async def test_once_the_owner_is_gone_any_replica_may_end_its_session(
    database: Database, clock: Clock, api_on_replica_b: Api
) -> None:
    a = replica(database, "replica-a", clock)
    session_id = await served_by(a)
    clock.advance(LEASE_S + 1)
    response = await api_on_replica_b.request("DELETE", f"/live-sessions/{session_id}")
    assert response.status_code == 200 and response.json()["state"] == "ENDED"


async def test_the_lease_keeper_renews_in_the_background_until_stopped(
    database: Database,
) -> None:
    lease_s = 0.6
    a = SessionStore(database, policy=SessionPolicy(instance_id="replica-a", lease_s=lease_s))
    b = SessionStore(database, policy=SessionPolicy(instance_id="replica-b", lease_s=lease_s))
    session_id = await served_by(a)
    keeper = a.start_lease_keeper()
    try:
        await asyncio.sleep(lease_s * 3)
        assert await b.sweep() == 0
        assert keeper.rounds >= 3
    finally:
        await keeper.stop()
    await asyncio.sleep(lease_s * 1.5)  # A "died": nobody renews
    assert await b.sweep() == 1
    assert (await b.get(session_id, "alice")).end_reason == OWNER_LOST_REASON
