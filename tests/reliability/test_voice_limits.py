"""The store's limits as a client meets them, on the real service (uvicorn socket, emulator):
refusals on the voice WebSocket are 1008 closes with a reason, REST refusals a 429 / 409 — and
the race from issue #8 (`end` right after the turn that exhausts the budget) never locks the
database or leaves a session LIVE."""

from __future__ import annotations

import asyncio
import time

from voicetrace.service.client import VoiceClient

CLOSE_POLICY = 1008


def _auth(svc, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.token(user)}"}


async def _refused(svc, session_id: str, user: str) -> tuple[int | None, str]:
    async with VoiceClient.connect(svc.ws_url(session_id), svc.token(user)) as client:
        code = await client.wait_closed()
        return code, client.close_reason


async def test_end_right_after_the_budget_exhausting_turn_never_locks_the_database(
    start_service,
) -> None:
    svc = await start_service()
    for attempt in range(20):
        session = await svc.create_session("alice", budgets={"session_usd": 0.000001})
        async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("alice")) as client:
            await client.wait_for("session_started")
            await client.send("text", text="Hello")
            await client.wait_for("turn_complete")
            await client.send("end")  # while the bridge is pausing the session for budget
            ended = await client.wait_for("session_ended")
        assert ended["reason"] in ("completed", "budget_exhausted"), attempt
        stored = await svc.get_session(session["id"], "alice")
        assert stored["state"] == "ENDED", (attempt, stored["state"])
        started = time.monotonic()
        other = await svc.http.post("/live-sessions", json={}, headers=_auth(svc, "bob"))
        assert other.status_code == 201, (attempt, other.text)  # every user can still write
        assert time.monotonic() - started < 2, attempt
        await svc.http.delete(f"/live-sessions/{other.json()['id']}", headers=_auth(svc, "bob"))


async def test_a_zero_budget_session_is_refused_on_connect_with_1008(start_service) -> None:
    svc = await start_service()
    session = await svc.create_session("carol", budgets={"session_usd": 0})
    assert session["budget_exhausted"] == "session_usd"
    code, reason = await _refused(svc, session["id"], "carol")
    assert code == CLOSE_POLICY and reason == "budget exhausted: session_usd"
    assert svc.emulator.connections == 0  # never reached the (billed) model


async def test_the_per_user_live_cap_refuses_one_more_connection_with_1008(start_service) -> None:
    svc = await start_service(max_live_sessions_per_user=1)
    first = await svc.create_session("dora")
    second = await svc.create_session("dora")
    async with VoiceClient.connect(svc.ws_url(first["id"]), svc.token("dora")) as client:
        await client.wait_for("session_started")
        code, reason = await _refused(svc, second["id"], "dora")
        assert code == CLOSE_POLICY and "too many live" in reason and "at most 1" in reason
        assert (await svc.get_session(second["id"], "dora"))["state"] == "CONNECTING"
        other = await svc.create_session("eve")  # other users are not affected
        async with VoiceClient.connect(svc.ws_url(other["id"]), svc.token("eve")) as theirs:
            await theirs.wait_for("session_started")
            await theirs.send("end")
            await theirs.wait_for("session_ended")
        await client.send("end")
        await client.wait_for("session_ended")


async def test_the_per_user_open_cap_is_a_429_on_create(start_service) -> None:
    svc = await start_service(max_open_sessions_per_user=2)
    for _ in range(2):
        await svc.create_session("finn")
    refused = await svc.http.post("/live-sessions", json={}, headers=_auth(svc, "finn"))
    assert refused.status_code == 429
    assert refused.json()["detail"]["code"] == "too_many_open_sessions"


async def test_a_session_nobody_connects_to_in_time_expires(start_service) -> None:
    svc = await start_service(session_connect_timeout_s=0.5)
    session = await svc.create_session("gail")
    await asyncio.sleep(0.7)
    code, reason = await _refused(svc, session["id"], "gail")
    assert code == CLOSE_POLICY and "connect_timeout" in reason
    stored = await svc.get_session(session["id"], "gail")
    assert stored["state"] == "ENDED" and stored["end_reason"] == "connect_timeout"


async def test_health_names_this_instance(start_service) -> None:
    svc = await start_service(instance_id="replica-under-test")
    body = (await svc.http.get("/health")).json()
    assert body["instance_id"] == "replica-under-test"
