"""The browser client in a real headless Chromium, talking through a fake microphone.

Chromium plays a WAV file as its microphone; the page captures it in an AudioWorklet, resamples
it to 16 kHz PCM16 and streams it over the voice WebSocket to the service, which bridges it to
the Gemini Live emulator through the real google-genai SDK. The emulator's server-side VAD ends
each spoken turn; its scenario decides what the turn "said". Spans go out over real OTLP/HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import wave
from pathlib import Path

import pytest
from voicetrace.emulator import Scenario
from voicetrace.service.voice.audio import silence, speech_like
from voicetrace.telemetry import keys

from tests.browser.chromium import Chromium, Page, find_chromium
from tests.service.otlp_helpers import (
    assert_trace_contract,
    events,
    expected_usage,
    exporting_telemetry,
    wire_usage_by_turn,
)

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.timeout(180),
    # google-genai flags its ephemeral-token API (direct mode) as experimental.
    pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SAYS = ["Tell me about the old town.", "Find a coffee place nearby."]


@pytest.fixture
def chromium() -> Path:
    """The browser. Missing it skips locally; in CI (`CI=true`) it is a failure."""
    found = find_chromium()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (CI installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    return found


def write_microphone_wav(path: Path) -> Path:
    """Two utterances a VAD accepts, then a long silence (Chromium loops the file)."""
    pcm = (
        silence(0.8)
        + speech_like(1.0)
        + silence(2.5)
        + speech_like(1.2, pitch_hz=180.0)
        + silence(40.0)
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(pcm)
    return path


async def text_of(page: Page, selector: str) -> list[str]:
    return await page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent)"
    )


async def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    shot = await page.screenshot(tmp_path / name)
    if os.environ.get("CI", "").lower() == "true":
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / name)
    return shot


async def test_spoken_and_tool_turns_through_the_browser_make_the_span_contract(
    start_service, chromium: Path, tmp_path: Path
):
    with exporting_telemetry() as exported:
        svc = await start_service(scenario=Scenario(user_says=SAYS), telemetry=exported.telemetry)
        wav = write_microphone_wav(tmp_path / "microphone.wav")
        async with Chromium(chromium, fake_audio=wav) as page:
            await page.navigate(f"{svc.base_url}/app#token={svc.token('alice')}")
            await page.wait_for("!document.querySelector('#call').hidden")
            assert await page.evaluate("location.hash") == ""  # the token left the address bar
            assert await page.evaluate("document.querySelector('#user').textContent") == (
                "signed in as alice"
            )

            await page.evaluate("document.querySelector('#start').click()", user_gesture=True)
            await page.wait_for("document.querySelector('#status').textContent.startsWith('live')")
            await page.wait_for(
                "document.querySelectorAll('#turns tbody tr').length >= 2", timeout=40
            )
            session_id = await page.evaluate(
                "voicetrace.messages.find(m => m.type === 'session_started').session_id"
            )

            # What the page shows: both user turns as the emulator heard them, the model's
            # answers, the tool call, and a latency + cost row per turn.
            users = await text_of(page, '.line[data-role="user"] .text')
            models = await text_of(page, '.line[data-role="model"] .text')
            notes = await text_of(page, "#transcript .event")
            rows = await page.evaluate(
                "[...document.querySelectorAll('#turns tbody tr')]"
                ".map(r => [...r.cells].map(c => c.textContent))"
            )
            assert [u.strip() for u in users] == SAYS
            assert len(models) == 2 and all(m.strip() for m in models)
            assert any(n.startswith("tool call search_nearby(") for n in notes), notes
            assert [r[0] for r in rows] == ["1", "2"]
            assert all(r[1] == "completed" for r in rows), rows
            assert all(r[5].isdigit() and int(r[5]) > 0 for r in rows), rows  # total ms
            assert all(r[9].startswith("$") for r in rows), rows  # cost

            await page.evaluate("document.querySelector('#end').click()", user_gesture=True)
            await page.wait_for("document.querySelector('#status').textContent === 'ended'")
            await page.wait_for(
                f"document.querySelector('#sessions tr[data-session=\"{session_id}\"]')"
                "?.cells[1].textContent === 'ENDED'"
            )
            shot = await save_screenshot(page, tmp_path, "browser-client.png")
            assert shot.stat().st_size > 10_000
            assert not page.errors, page.errors

        spans = exported.spans(session_id)
        tree = assert_trace_contract(
            spans, session_id=session_id, user_id="alice", model=svc.settings.model
        )
        root = tree.root.attributes
        assert root["voice.session.end_reason"] == "completed"
        assert len(tree.turns) == 2 and set(tree.chats) == {1, 2}
        assert [t.attributes["voice.turn.trigger"] for t in tree.turns] == [
            "user_audio",
            "user_audio",
        ]
        # The microphone's audio really went through: at least both utterances, in real time.
        assert root["voice.session.audio_in_s"] >= 2.2
        for chat in tree.chats.values():
            assert chat.attributes["gen_ai.usage.input_tokens"] > 0
            assert chat.attributes["voice.cost.usd"] > 0
        assert [t.name for t in tree.tools[2]] == ["execute_tool search_nearby"]
        assert tree.tools[2][0].attributes["voice.tool.status"] == "ok"
        # The page reported playback: the turn heard its audio start on the client.
        for turn in tree.turns:
            assert events(turn, keys.EV_PLAYBACK_STARTED), turn.attributes["voice.turn.number"]


def write_barge_in_wav(path: Path) -> Path:
    """A question, then the user talks over the (real-time paced) answer."""
    pcm = silence(0.8) + speech_like(1.0) + silence(2.2) + speech_like(0.8) + silence(40.0)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(pcm)
    return path


async def test_barge_in_stops_playback_and_reports_what_was_heard(
    start_service, chromium: Path, tmp_path: Path
):
    scenario = Scenario(
        user_says=["Tell me a long story about the harbour and its lighthouse.", "Sorry, stop."],
        realtime=True,  # the answer streams at speaking pace, so the user can talk over it
    )
    with exporting_telemetry() as exported:
        svc = await start_service(scenario=scenario, telemetry=exported.telemetry)
        wav = write_barge_in_wav(tmp_path / "barge-in.wav")
        async with Chromium(chromium, fake_audio=wav) as page:
            await page.navigate(f"{svc.base_url}/app#token={svc.token('bob')}")
            await page.wait_for("!document.querySelector('#call').hidden")
            await page.evaluate("document.querySelector('#start').click()", user_gesture=True)
            await page.wait_for(
                "voicetrace.messages.some(m => m.type === 'interrupted' && m.turn === 1)",
                timeout=30,
            )
            # Barge-in silences the page at once: nothing of turn 1 is still playing.
            assert await page.evaluate("voicetrace.call.player.current.stopped") is True
            started, stopped = await page.evaluate(
                "voicetrace.call.marks.filter(m => m.turn === 1)"
            )
            assert started == {"event": "started", "turn": 1, "played_ms": 0}
            received_ms = await page.evaluate("voicetrace.call.player.current.ms")
            assert stopped["event"] == "stopped"
            assert 0 < stopped["played_ms"] <= received_ms
            await page.wait_for(
                "document.querySelectorAll('#turns tbody tr').length >= 2", timeout=30
            )
            cut = await text_of(page, '.line.cut[data-role="model"]')
            assert len(cut) == 1 and cut[0].strip()
            notes = await text_of(page, "#transcript .event")
            assert "turn 1 interrupted (barge-in)" in notes
            session_id = await page.evaluate(
                "voicetrace.messages.find(m => m.type === 'session_started').session_id"
            )
            await page.evaluate("document.querySelector('#end').click()", user_gesture=True)
            await page.wait_for("document.querySelector('#status').textContent === 'ended'")
            await save_screenshot(page, tmp_path, "browser-barge-in.png")
            assert not page.errors, page.errors

        tree = assert_trace_contract(
            exported.spans(session_id),
            session_id=session_id,
            user_id="bob",
            model=svc.settings.model,
        )
        first = tree.turn(1).attributes
        assert first["voice.turn.interrupted"] is True
        assert first["voice.turn.end_reason"] == "interrupted"
        assert events(tree.turn(1), keys.EV_PLAYBACK_STARTED)  # the page's mark reached the span
        assert tree.turn(2).attributes["voice.turn.end_reason"] == "completed"
        # The page's `stopped` mark follows the service's `interrupted` by a round trip, so it
        # arrives after the interrupted turn's spans went out (at the model's turn_complete):
        # the span carries the service's estimate of what was heard, not the page's number.
        # (Telemetry finding, reported: heard_source is `estimate` for browser clients.)
        chat = tree.chats[1].attributes
        assert chat["voice.audio.heard_ms"] <= chat["voice.audio.output_ms"]


async def test_direct_mode_talks_to_gemini_live_and_the_trace_comes_from_the_page_alone(
    start_service, chromium: Path, tmp_path: Path
):
    with exporting_telemetry() as exported:
        svc = await start_service(scenario=Scenario(user_says=SAYS), telemetry=exported.telemetry)
        wav = write_microphone_wav(tmp_path / "microphone.wav")
        # The emulator's TLS certificate comes from a throwaway CA this browser does not know.
        trust = ("--ignore-certificate-errors",)
        async with Chromium(chromium, fake_audio=wav, extra_args=trust) as page:
            await page.navigate(f"{svc.base_url}/app#token={svc.token('carol')}")
            await page.wait_for("!document.querySelector('#call').hidden")
            await page.evaluate(
                "document.querySelector('input[name=mode][value=direct]').click()",
                user_gesture=True,
            )
            await page.evaluate("document.querySelector('#start').click()", user_gesture=True)
            await page.wait_for("document.querySelector('#status').textContent.includes('direct')")
            await page.wait_for(
                "document.querySelectorAll('#turns tbody tr').length >= 2", timeout=40
            )
            session_id = await page.evaluate("voicetrace.call.session.id")
            users = await text_of(page, '.line[data-role="user"] .text')
            models = await text_of(page, '.line[data-role="model"] .text')
            notes = await text_of(page, "#transcript .event")
            assert [u.strip() for u in users] == SAYS
            assert len(models) == 2 and all(m.strip() for m in models)
            assert any(n.startswith("tool call search_nearby(") for n in notes), notes
            assert any(n.startswith("tool search_nearby ok") for n in notes), notes

            await page.evaluate("document.querySelector('#end').click()", user_gesture=True)
            await page.wait_for("document.querySelector('#status').textContent === 'ended'")
            await page.wait_for(
                f"document.querySelector('#sessions tr[data-session=\"{session_id}\"]')"
                "?.cells[1].textContent === 'ENDED'"
            )
            ended = await page.evaluate("voicetrace.messages.find(m => m.type === 'session_ended')")
            await save_screenshot(page, tmp_path, "browser-direct.png")
            assert not page.errors, page.errors

        # The service never saw the audio: the conversation ran between the page and the
        # emulator, and the trace was assembled from the page's events alone.
        # The only Live connection is the page's: its setup names the model and nothing else
        # (the token locks the rest), unlike the full setup the service's bridge sends.
        setups = [e.message["setup"] for e in svc.emulator.wire.select("in", key="setup")]
        assert setups == [{"model": f"models/{svc.settings.model}"}]
        assert svc.emulator.wire.select("in", key="realtimeInput")  # the audio went there
        spans = exported.spans(session_id)
        tree = assert_trace_contract(
            spans, session_id=session_id, user_id="carol", model=svc.settings.model
        )
        root = tree.root.attributes
        assert "direct" in root["langfuse.trace.tags"]
        assert len(tree.turns) == 2 and set(tree.chats) == {1, 2}
        assert [t.name for t in tree.tools[2]] == ["execute_tool search_nearby"]
        assert root["voice.session.audio_in_s"] >= 2.2
        for number, meta in enumerate(wire_usage_by_turn(svc.emulator), start=1):
            usage = json.loads(tree.chats[number].attributes["langfuse.observation.usage_details"])
            assert usage == expected_usage(meta), number
        assert ended["summary"]["turns"] == 2
        assert ended["summary"]["cost_usd"] == root["voice.session.cost_usd"] > 0
