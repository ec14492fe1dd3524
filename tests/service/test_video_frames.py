"""Camera and screen frames end to end: client `video_frame` → service → real google-genai SDK →
emulator (`realtimeInput.video`, billed per frame at the setup's media resolution) → the chat
spans, the ledger, `/api/observability/costs` and `session_ended`, split camera vs screen."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal

import pytest
from voicetrace.service.client import VoiceClient

from tests.frames_helpers import jpeg, png, video_sent

FRAME_TOKENS = 70  # Gemini 3 models, default (MEDIUM) media resolution


async def _ledger_idle(svc) -> None:
    for _ in range(200):
        if (await svc.http.get("/api/observability/health")).json()["ledger"]["buffered"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the ledger never caught up")


async def test_frames_are_forwarded_as_realtime_video_and_billed_by_source_exactly(
    start_service,
) -> None:
    svc = await start_service(max_video_fps=20.0)  # frames faster than a person would
    session = await svc.create_session("vera")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("vera")) as client:
        await client.wait_for("session_started")
        for _ in range(3):
            await client.send_frame("camera", jpeg())
        await client.send_frame("screen", png(), "image/png")
        await client.send("text", text="What do you see?")
        first = await client.wait_for("turn_complete", timeout=15)
        await client.send_frame("screen", png(shade=9), "image/png")
        await client.send_frame("screen", png(shade=19), "image/png")
        await client.send("text", text="And now?")
        await client.wait_for("turn_complete", count=2, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    assert not client.of_type("error")
    second = client.of_type("turn_complete")[1]

    # Every frame went to Gemini as realtime video, bytes and type intact.
    sent = video_sent(svc.emulator)
    assert [v["mime_type"] for v in sent] == ["image/jpeg"] * 3 + ["image/png"] * 3
    assert base64.urlsafe_b64decode(sent[3]["data"]) == png()

    # Frames stay in the context: turn 1 re-bills 4 frames, turn 2 all 6, split by frames sent.
    assert first["tokens_by_modality"]["input_image"] == 4 * FRAME_TOKENS
    assert (first["camera_tokens"], first["screen_tokens"]) == (210, 70)  # 3:1 of 280
    assert (first["camera_frames"], first["screen_frames"]) == (3, 1)
    assert second["tokens_by_modality"]["input_image"] == 6 * FRAME_TOKENS
    assert (second["camera_tokens"], second["screen_tokens"]) == (210, 210)  # 3:3 of 420
    assert (second["camera_frames"], second["screen_frames"]) == (0, 2)

    summary = ended["summary"]
    assert (summary["camera_tokens"], summary["screen_tokens"]) == (420, 280)
    assert (summary["camera_frames"], summary["screen_frames"]) == (3, 3)

    # The chat spans carry the same split …
    chats = [s for s in svc.finished_spans() if s.name.startswith("chat ")]
    assert sum(s.attributes["voice.usage.camera_tokens"] for s in chats) == 420
    assert sum(s.attributes["voice.usage.screen_tokens"] for s in chats) == 280
    assert sum(s.attributes["gen_ai.usage.image.input_tokens"] for s in chats) == 700
    (root,) = [s for s in svc.finished_spans() if s.name == "voice_session"]
    assert root.attributes["voice.session.camera_tokens"] == 420
    assert root.attributes["voice.session.screen_frames"] == 3

    # … and so do the ledger and the costs API (image tokens priced as image input).
    await _ledger_idle(svc)
    r = await svc.http.get(
        "/api/observability/costs", headers={"Authorization": f"Bearer {svc.token('vera')}"}
    )
    assert r.status_code == 200, r.text
    total = r.json()["total"]
    assert total["tokens"]["camera_tokens"] == 420 and total["tokens"]["screen_tokens"] == 280
    assert total["tokens"]["input_image"] == 700
    span_cost = sum(Decimal(s.attributes["voice.cost.usd_decimal"]) for s in chats)
    assert Decimal(total["cost_usd_decimal"]) == span_cost
    # gemini-3.8-live image input: $1.00 per million tokens (prices.json).
    image_cost = [
        json.loads(s.attributes["langfuse.observation.cost_details"])["input_image_tokens"]
        for s in chats
    ]
    assert sorted(image_cost) == pytest.approx([280e-6, 420e-6])


async def test_media_resolution_is_sent_in_the_setup_and_sets_the_tokens_per_frame(
    start_service,
) -> None:
    svc = await start_service(media_resolution="high")
    session = await svc.create_session("hugo")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("hugo")) as client:
        await client.wait_for("session_started")
        await client.send_frame("screen", png(), "image/png")
        await client.send("text", text="Read my screen")
        turn = await client.wait_for("turn_complete", timeout=15)
        await client.send("end")
        await client.wait_for("session_ended", timeout=15)
    (setup,) = [e.message["setup"] for e in svc.emulator.wire.select("in", "setup")]
    assert setup["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_HIGH"
    assert turn["screen_tokens"] == 280 and turn["camera_tokens"] == 0


async def test_bad_frames_get_an_error_code_and_the_session_keeps_what_it_accepted(
    start_service,
) -> None:
    svc = await start_service(max_video_frame_bytes=2_000)
    session = await svc.create_session("bob")
    good = base64.b64encode(jpeg()).decode()
    bad = [
        ({"source": "camera", "mime_type": "image/gif", "data": good}, "unsupported_image_type"),
        ({"source": "camera", "mime_type": "image/png", "data": good}, "image_type_mismatch"),
        ({"source": "screen", "mime_type": "image/jpeg", "data": "not base64!"}, "bad_image_data"),
        (
            {
                "source": "screen",
                "mime_type": "image/jpeg",
                "data": base64.b64encode(jpeg(3_000)).decode(),
            },
            "frame_too_large",
        ),
        ({"source": "window", "mime_type": "image/jpeg", "data": good}, "invalid_message"),
        ({"source": "camera", "mime_type": "image/jpeg"}, "invalid_message"),
    ]
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("bob")) as client:
        await client.wait_for("session_started")
        await client.send_frame("camera", jpeg())  # accepted before the bad ones
        for n, (fields, _code) in enumerate(bad, start=1):
            await client.send("video_frame", **fields)
            await client.wait_for("error", count=n)
        await client.send("text", text="Still there?")
        turn = await client.wait_for("turn_complete", timeout=15)
        await client.send("end")
        await client.wait_for("session_ended", timeout=15)
    assert [e["code"] for e in client.of_type("error")] == [code for _, code in bad]
    assert all(e["message"] for e in client.of_type("error"))
    assert len(video_sent(svc.emulator)) == 1  # nothing refused reached Gemini
    assert turn["camera_tokens"] == FRAME_TOKENS and turn["camera_frames"] == 1


async def test_frames_over_a_sources_rate_are_refused_and_the_other_source_is_unaffected(
    start_service,
) -> None:
    svc = await start_service(max_video_fps=1.0)
    session = await svc.create_session("rita")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("rita")) as client:
        await client.wait_for("session_started")
        for _ in range(3):  # a burst of one second's worth (1 frame) at 1 fps
            await client.send_frame("screen", png(), "image/png")
        await client.send_frame("camera", jpeg())
        await client.wait_for("error", count=2)
        await client.send("text", text="ok")
        turn = await client.wait_for("turn_complete", timeout=15)
        await client.send("end")
        await client.wait_for("session_ended", timeout=15)
    assert [e["code"] for e in client.of_type("error")] == ["video_rate_limited"] * 2
    assert (turn["screen_frames"], turn["camera_frames"]) == (1, 1)
    assert len(video_sent(svc.emulator)) == 2


async def test_frames_over_the_rate_are_dropped_without_counting_as_invalid_frames(
    start_service,
) -> None:
    """A camera a little over the rate for a long time is throttled, never closed as abuse:
    many more rate-limited frames than `max_bad_frames` and the session goes on."""
    svc = await start_service(max_video_fps=1.0, max_bad_frames=2)
    session = await svc.create_session("tess")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("tess")) as client:
        await client.wait_for("session_started")
        for _ in range(8):
            await client.send_frame("camera", jpeg())
        await client.wait_for("error", count=7)
        await client.send("text", text="still here?")
        turn = await client.wait_for("turn_complete", timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    assert [e["code"] for e in client.of_type("error")] == ["video_rate_limited"] * 7
    assert ended["reason"] == "completed"
    assert turn["camera_frames"] == 1


async def test_the_largest_frame_the_settings_allow_reaches_gemini_and_a_bigger_one_is_refused(
    start_service,
) -> None:
    """The socket's own message limit leaves room for the configured frame size (and 4× it,
    so an oversize frame gets `frame_too_large`, not a bare 1009 from the protocol layer)."""
    svc = await start_service(max_video_frame_bytes=1_000_000)
    session = await svc.create_session("uma")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("uma")) as client:
        await client.wait_for("session_started")
        await client.send_frame("screen", jpeg(1_000_000))
        await client.send_frame("camera", jpeg(1_500_000))
        await client.wait_for("error")
        await client.send("text", text="ok")
        turn = await client.wait_for("turn_complete", timeout=15)
        await client.send("end")
        await client.wait_for("session_ended", timeout=15)
    assert [e["code"] for e in client.of_type("error")] == ["frame_too_large"]
    assert (turn["screen_frames"], turn["camera_frames"]) == (1, 0)
    assert len(video_sent(svc.emulator)) == 1


async def test_the_emulator_bills_media_chunk_images_and_refuses_other_media(
    start_service,
) -> None:
    """The raw SDK against the emulator: an image sent as (deprecated) `media` is billed as
    IMAGE at the setup's resolution; media that is neither audio nor an image closes 1007."""
    from google import genai
    from google.genai import types

    svc = await start_service()
    client = genai.Client(api_key=svc.settings.gemini_api_key.get_secret_value())
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        media_resolution=types.MediaResolution.MEDIA_RESOLUTION_HIGH,
    )
    async with client.aio.live.connect(model=svc.settings.model, config=config) as live:
        await live.send_realtime_input(media=types.Blob(data=png(), mime_type="image/png"))
        await live.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hi")]), turn_complete=True
        )
        async for message in live.receive():
            if message.usage_metadata is not None:
                details = {
                    d.modality.value: d.token_count
                    for d in message.usage_metadata.prompt_tokens_details or []
                }
                assert details["IMAGE"] == 280
                break
    async with client.aio.live.connect(model=svc.settings.model, config=config) as live:
        await live.send_realtime_input(media=types.Blob(data=b"hello", mime_type="text/plain"))
        with pytest.raises(Exception, match="1007"):
            async for _ in live.receive():
                pass
