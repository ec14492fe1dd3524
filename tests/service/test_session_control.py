"""What changes a live session besides its audio: budgets, REST pause/resume/end, push-to-talk."""

from __future__ import annotations

import pytest
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.audio import silence, speech_like


async def _one_typed_turn_cost(svc) -> float:
    session = await svc.create_session("probe")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("probe")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello")
        cost = (await client.wait_for("turn_complete"))["cost_usd"]
        await client.send("end")
        await client.wait_for("session_ended")
    assert cost is not None and cost > 0
    return cost


async def test_session_budget_warns_at_80_percent_then_pauses_at_100(start_service):
    svc = await start_service()
    cost = await _one_typed_turn_cost(svc)  # the emulator is deterministic: same turn, same cost
    limit = round(cost / 0.9, 8)  # one turn uses 90 % of it
    session = await svc.create_session("alice", budgets={"session_usd": limit})
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("alice")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello")
        warning = await client.wait_for("budget_warning")
        assert warning["budget"]["metric"] == "usd"
        assert warning["budget"]["ratio"] == pytest.approx(0.9, abs=0.01)
        assert not client.of_type("session_paused")

        await client.send("text", text="Hello")
        paused = await client.wait_for("session_paused")
        assert paused["reason"] == "budget_exhausted"
        assert paused["budget"]["ratio"] >= 1.0
        state = await svc.get_session(session["id"], "alice")
        assert (state["state"], state["state_reason"]) == ("PAUSED", "budget_exhausted")

        await client.send("text", text="Are you there?")
        refused = await client.wait_for("error")
        assert refused["code"] == "session_paused"
        assert len(client.of_type("turn_complete")) == 2  # nothing reached the model
    assert len(client.of_type("budget_warning")) == 1  # warned once, not on every turn


async def test_rest_pause_resume_and_end_reach_the_live_session(start_service):
    svc = await start_service()
    session = await svc.create_session("bob")
    auth = {"Authorization": f"Bearer {svc.token('bob')}"}
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("bob")) as client:
        await client.wait_for("session_started")
        response = await svc.http.put(f"/live-sessions/{session['id']}/pause", headers=auth)
        assert response.status_code == 200
        assert (await client.wait_for("session_paused"))["reason"] == "paused_by_user"
        await client.send("text", text="Hello?")
        assert (await client.wait_for("error"))["code"] == "session_paused"

        response = await svc.http.put(f"/live-sessions/{session['id']}/resume", headers=auth)
        assert response.status_code == 200
        await client.wait_for("session_resumed")
        await client.send("text", text="Hello again")
        assert (await client.wait_for("turn_complete"))["number"] == 1

        response = await svc.http.delete(f"/live-sessions/{session['id']}", headers=auth)
        assert response.status_code == 200
        ended = await client.wait_for("session_ended")
        assert await client.wait_closed() == 1000
    assert ended["reason"] == "ended_by_user"
    state = await svc.get_session(session["id"], "bob")
    assert (state["state"], state["end_reason"]) == ("ENDED", "ended_by_user")
    assert state["summary"]["turns"] == 1
    assert state["summary"]["end_reason"] == "ended_by_user"
    assert state["audio_minutes_used"] > 0  # filled from the session's audio totals
    (root,) = [
        s
        for s in svc.finished_spans()
        if s.name == "voice_session" and s.attributes["session.id"] == session["id"]
    ]
    assert root.attributes["voice.session.end_reason"] == "ended_by_user"
    assert root.status.is_ok


async def test_activity_markers_are_refused_while_server_vad_is_on(start_service):
    svc = await start_service()
    session = await svc.create_session("carol")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("carol")) as client:
        await client.wait_for("session_started")
        await client.send("activity_start")
        assert (await client.wait_for("error"))["code"] == "activity_detection_automatic"
        await client.send("text", text="Still fine?")
        assert (await client.wait_for("turn_complete"))["end_reason"] == "completed"


async def test_push_to_talk_turns_are_marked_by_activity_start_and_end(start_service):
    svc = await start_service(automatic_activity_detection=False)
    session = await svc.create_session("dave")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("dave")) as client:
        await client.wait_for("session_started")
        await client.send("activity_start")
        # Long silence after speech would end a turn under server VAD; here only activity_end does.
        await client.say(speech_like(0.4) + silence(1.0))
        await client.send("activity_end")
        done = await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    assert not client.of_type("error")
    assert done["number"] == 1 and done["end_reason"] == "completed"
    sent = [e.message for e in svc.emulator.wire if e.direction == "in" and e.message]
    assert any("activityStart" in str(m) or "activity_start" in str(m) for m in sent)
    assert any("activityEnd" in str(m) or "activity_end" in str(m) for m in sent)


async def test_a_budget_patched_during_a_live_session_applies_from_the_next_turn(start_service):
    svc = await start_service()
    session = await svc.create_session("erin")
    auth = {"Authorization": f"Bearer {svc.token('erin')}"}
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("erin")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello")
        first = await client.wait_for("turn_complete")
        limit = round(first["cost_usd"] * 1.5, 6)  # the second turn will cross it
        response = await svc.http.patch(
            f"/live-sessions/{session['id']}",
            json={"budgets": {"session_usd": limit}},
            headers=auth,
        )
        assert response.status_code == 200, response.text
        await client.send("text", text="Hello")
        paused = await client.wait_for("session_paused")
    assert paused["reason"] == "budget_exhausted"
    assert paused["budget"]["limit"] == pytest.approx(limit)
