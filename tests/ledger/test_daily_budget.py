"""Daily budgets in the middle of a conversation: `budget_warning` at 80 %, `session_paused`
(`budget_exhausted`, naming the budget) at 100 %, then new sessions refused — for the USD and
the audio-minute budget, set by an admin or lowered by the session itself."""

from __future__ import annotations

import asyncio

import pytest
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient

from tests.conftest import JWT_SECRET

ADMIN = mint_token("ops", JWT_SECRET, roles=["admin"])
PROMPTS = ("What time is it?", "And the weather?", "Thanks, anything else?")


async def _script(svc, user: str, budgets: dict | None = None) -> VoiceClient:
    """The same three typed turns; stops early when the session is paused."""
    session = await svc.create_session(user, budgets=budgets or {})
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(user)) as client:
        await client.wait_for("session_started")
        for n, prompt in enumerate(PROMPTS, start=1):
            await client.send("text", text=prompt)
            await client.wait_for("turn_complete", count=n, timeout=15)
            await asyncio.sleep(0.2)  # the daily check runs just after the summary
            if client.of_type("session_paused"):
                break
        await client.send("end")
        await client.wait_for("session_ended", timeout=15)
    return client


def _used(turn: dict, metric: str) -> float:
    if metric == "usd":
        return turn["cost_usd"]
    return (turn["audio_in_ms"] + turn["audio_out_ms"]) / 60_000


async def _ledger_idle(svc) -> None:
    for _ in range(200):
        if (await svc.http.get("/api/observability/health")).json()["ledger"]["buffered"] == 0:
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("metric", "via"),
    [("usd", "admin"), ("audio_minutes", "admin"), ("usd", "session")],
)
async def test_daily_budget_warns_at_80_pauses_at_100_and_refuses_new_sessions(
    start_service, metric: str, via: str
) -> None:
    svc = await start_service()
    # Calibrate: the emulator answers the same script the same way for any user.
    calibration = await _script(svc, "calibration")
    used = [_used(t, metric) for t in calibration.of_type("turn_complete")]
    assert len(used) == 3 and all(u > 0 for u in used)
    limit = (used[0] + used[1]) / 0.9  # turn 1 < 80 % ≤ turn 2 = 90 % < 100 % ≤ turn 3
    assert used[0] / limit < 0.8 and used[0] + used[1] + used[2] >= limit
    budget = f"daily_{metric}"
    budgets = None
    if via == "admin":
        r = await svc.http.put(
            "/api/budgets/users/dan",
            json={budget: round(limit, 6)},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 200, r.text
    else:
        budgets = {budget: round(limit, 6)}

    client = await _script(svc, "dan", budgets)

    kinds = [m["type"] for m in client.messages if m["type"] != "transcript"]
    turn_of = [i for i, kind in enumerate(kinds) if kind == "turn_complete"]
    (warning,) = client.of_type("budget_warning")
    (paused,) = client.of_type("session_paused")
    assert turn_of[1] < kinds.index("budget_warning") < turn_of[2]  # after turn 2
    assert kinds.index("session_paused") > turn_of[2]  # after turn 3
    assert warning["budget"]["budget"] == budget
    assert warning["budget"]["ratio"] == pytest.approx(0.9, abs=0.02)
    assert paused["reason"] == "budget_exhausted" and paused["budget"]["budget"] == budget
    assert paused["budget"]["ratio"] >= 1.0

    await _ledger_idle(svc)
    # A new session for an exhausted user is refused up front (409 naming the budget)…
    refused = await svc.http.post(
        "/live-sessions",
        json={"mode": "test", "budgets": budgets or {}},
        headers={"Authorization": f"Bearer {svc.token('dan')}"},
    )
    assert refused.status_code == 409 and budget in refused.text
    # Another user is not affected.
    other = await _script(svc, "erin")
    assert not other.of_type("session_paused")


async def test_resume_is_refused_while_the_daily_budget_is_used_up_then_allowed(start_service):
    svc = await start_service()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    user = {"Authorization": f"Bearer {svc.token('gus')}"}
    r = await svc.http.put("/api/budgets/users/gus", json={"daily_usd": 0.000001}, headers=admin)
    assert r.status_code == 200, r.text
    session = await svc.create_session("gus")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("gus")) as client:
        await client.wait_for("session_started")
        await client.send("text", text=PROMPTS[0])
        paused = await client.wait_for("session_paused", timeout=15)
        assert paused["budget"]["budget"] == "daily_usd"
        await _ledger_idle(svc)
        refused = await svc.http.put(f"/live-sessions/{session['id']}/resume", headers=user)
        assert refused.status_code == 409 and "daily_usd" in refused.text
        r = await svc.http.put("/api/budgets/users/gus", json={"daily_usd": 10.0}, headers=admin)
        assert r.status_code == 200, r.text
        resumed = await svc.http.put(f"/live-sessions/{session['id']}/resume", headers=user)
        assert resumed.status_code == 200, resumed.text
        assert (await client.wait_for("session_resumed"))["type"] == "session_resumed"
        await client.send("end")
        await client.wait_for("session_ended")
