"""Turn audio as WAV attachments through Langfuse's media API (a local server that enforces the
upload-URL, presigned-PUT and patch rules), referenced from the turn's input/output."""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from collections.abc import Iterator

import pytest
from voicetrace.telemetry import PriceTable, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.media import AudioCapture, MediaUploader
from voicetrace.telemetry.setup import configure_telemetry

from tests.langfuse_server import LangfuseServer
from tests.telemetry.conftest import session_info


def tone(seconds: float, rate: int) -> bytes:
    n = int(seconds * rate)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n)
    )


@pytest.fixture
def made() -> Iterator[list[VoiceTelemetry]]:
    tels: list[VoiceTelemetry] = []
    yield tels
    for tel in tels:
        tel.shutdown(1.0)


def _session(
    made: list[VoiceTelemetry], lf: LangfuseServer, consent: bool
) -> tuple[VoiceTelemetry, MediaUploader]:
    """A session configured from the environment as the service configures it: Langfuse
    credentials give a media uploader; capture + consent make the session record audio."""
    tel = configure_telemetry(
        env={
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "VOICETRACE_LANGFUSE_SCORES": "false",
            **lf.env(),
        },
        pricing=PriceTable.load(None),
        capture_content=True,
        schedule_delay_ms=20,
    )
    made.append(tel)
    assert tel.media is not None
    s = tel.start_session(session_info(recording_consent=consent))
    assert s.records_audio is consent
    said, answer = tone(0.5, 16_000), tone(1.0, 24_000)
    s.user_audio(0.5, voiced=True)
    s.input_transcript("play me a tone", finished=True)
    s.audio("input", said)
    s.model_audio(len(answer))
    s.output_transcript("Here it is.")
    s.audio("output", answer)
    s.usage(UsageSnapshot(prompt=50, response=40))
    s.turn_complete()
    s.end()
    assert tel.force_flush(5.0)
    return tel, tel.media


def test_turn_audio_is_uploaded_as_wav_and_referenced_from_the_turn(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer() as lf:
        tel, uploader = _session(made, lf, consent=True)
        assert uploader.flush(5.0)
        uploader.close()
        lf.wait("spans", 3)
    assert lf.violations == []
    turn = next(s for s in lf.spans if s.name.startswith("invoke_agent"))
    said = json.loads(turn.attributes["langfuse.observation.input"])
    heard = json.loads(turn.attributes["langfuse.observation.output"])
    assert said["text"] == "play me a tone" and heard["text"] == "Here it is."
    for value, field, rate, seconds in (
        (said, "input", 16_000, 0.5),
        (heard, "output", 24_000, 1.0),
    ):
        mid = value["audio"].split("|id=")[1].split("|")[0]
        assert value["audio"] == f"@@@langfuseMedia:type=audio/wav|id={mid}|source=bytes@@@"
        record = lf.media[mid]
        assert (record["traceId"], record["observationId"]) == (turn.trace_id, turn.span_id)
        assert record["field"] == field and record["patched"]["uploadHttpStatus"] == 200
        with wave.open(io.BytesIO(record["bytes"])) as w:  # a WAV that decodes, right length
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
            assert w.getnframes() == int(seconds * rate)
        assert value["audio_ms"] == seconds * 1000
    assert tel.health()["media_uploaded"] == 2


def test_without_consent_no_audio_is_taken_or_uploaded(made: list[VoiceTelemetry]) -> None:
    with LangfuseServer() as lf:
        tel, uploader = _session(made, lf, consent=False)
        uploader.close()
        lf.wait("spans", 3)
    assert lf.media == {} and lf.violations == []
    turn = next(s for s in lf.spans if s.name.startswith("invoke_agent"))
    assert "langfuse.observation.input" not in turn.attributes
    assert tel.health().get("media_uploaded", 0) == 0


def test_capture_is_bounded_per_clip_and_in_turns() -> None:
    health = TelemetryHealth()
    capture = AudioCapture(health, max_turn_s=0.1, max_turns=2)
    capture.add(1, "input", tone(0.5, 16_000))  # only 0.1 s is kept
    capture.add(2, "input", b"\0\0" * 100)
    capture.add(3, "input", b"\0\0" * 100)  # a third turn: the oldest is forgotten
    assert capture.take(1) == [] and health.get("media_dropped") == 1
    (clip,) = capture.take(2)
    assert clip.duration_ms == pytest.approx(100 / 16_000 * 1000)
    capture.add(4, "output", tone(0.5, 24_000))
    (out,) = capture.take(4)
    assert out.duration_ms == pytest.approx(100.0)
