"""A long monologue is paused by an audio-minute budget while it lasts, not when its turn
settles: the overshoot is bounded by one projection step plus one check."""

from __future__ import annotations

import math
import struct

import pytest
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.budget import StreamedAudio

from tests.conftest import JWT_SECRET

ADMIN = mint_token("ops", JWT_SECRET, roles=["admin"])
LIMIT_MIN = 0.1  # 6 s of audio
MONOLOGUE_S = 20.0
# One projection step, plus what arrives at 2× real time during a check (≤ 1 s read).
BOUND_S = StreamedAudio().every_s + 2.0


def speech(seconds: float, rate: int = 16_000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(i / 8)) for i in range(n)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("budget", ["session_audio_minutes", "daily_audio_minutes"])
async def test_a_monologue_is_paused_within_a_few_seconds_of_its_audio_budget(
    start_service, budget: str
) -> None:
    svc = await start_service()
    budgets = {}
    if budget.startswith("session"):
        budgets = {budget: LIMIT_MIN}
    else:
        r = await svc.http.put(
            "/api/budgets/users/mona",
            json={budget: LIMIT_MIN},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 200
    session = await svc.create_session("mona", budgets=budgets)
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("mona")) as client:
        await client.wait_for("session_started")
        # 20 ms frames at 2× real time: the fastest sustained speed the service accepts.
        await client.say(speech(MONOLOGUE_S), frame_ms=20, pace_s=0.01)
        paused = await client.wait_for("session_paused", timeout=10)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=10)
    assert paused["reason"] == "budget_exhausted" and paused["budget"]["budget"] == budget
    # Audio after the pause went nowhere; what was billed overshot by at most the bound.
    billed_s = ended["summary"]["audio_in_s"]
    assert LIMIT_MIN * 60 <= billed_s <= LIMIT_MIN * 60 + BOUND_S, billed_s
    assert billed_s < MONOLOGUE_S
