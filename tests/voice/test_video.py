"""`video_frame` validation, per-source rates and per-frame token costs (`voice.video`)."""

from __future__ import annotations

import base64

import pytest
from voicetrace.emulator.usage import frame_tokens
from voicetrace.service.voice.budget import StreamedFrames
from voicetrace.service.voice.protocol import ProtocolError, VideoFrame, parse_client_text
from voicetrace.service.voice.video import (
    FrameRates,
    MediaResolution,
    decode_frame,
    max_text_bytes,
    tokens_per_frame,
)

from tests.frames_helpers import jpeg, png


def _msg(image: bytes, mime: str = "image/jpeg", source: str = "camera") -> VideoFrame:
    data = base64.b64encode(image).decode()
    raw = f'{{"type":"video_frame","source":"{source}","mime_type":"{mime}","data":"{data}"}}'
    msg = parse_client_text(raw)
    assert isinstance(msg, VideoFrame)
    return msg


def test_jpeg_and_png_frames_decode_to_their_bytes() -> None:
    assert decode_frame(_msg(jpeg()), 10_000) == jpeg()
    assert decode_frame(_msg(png(), "image/png", "screen"), 10_000) == png()


@pytest.mark.parametrize(
    ("image", "mime", "code"),
    [
        (jpeg(), "image/gif", "unsupported_image_type"),
        (jpeg(), "image/png", "image_type_mismatch"),
        (png(), "image/jpeg", "image_type_mismatch"),
        (b"GIF89a....", "image/jpeg", "image_type_mismatch"),
        (jpeg(5_000), "image/jpeg", "frame_too_large"),
    ],
)
def test_bad_frames_raise_a_stable_code(image: bytes, mime: str, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_frame(_msg(image, mime), 4_000)
    assert err.value.code == code


def test_data_that_is_not_base64_is_refused() -> None:
    msg = VideoFrame(type="video_frame", source="camera", mime_type="image/jpeg", data="@@@@")
    with pytest.raises(ProtocolError) as err:
        decode_frame(msg, 4_000)
    assert err.value.code == "bad_image_data"


def test_the_largest_frame_fits_the_text_frame_limit_it_implies() -> None:
    raw = _msg(jpeg(4_000))
    assert len(raw.model_dump_json()) <= max_text_bytes(4_000)


def test_each_source_has_its_own_rate() -> None:
    rates = FrameRates(1.0)
    rates.check("screen")
    with pytest.raises(ProtocolError) as err:
        rates.check("screen")
    assert err.value.code == "video_rate_limited"
    rates.check("camera")  # the camera is not starved by the screen share


@pytest.mark.parametrize(
    ("model", "resolution", "tokens"),
    [
        ("gemini-3.8-live", None, 70),
        ("gemini-3.8-live", "low", 70),
        ("gemini-3.8-live", "high", 280),
        ("models/gemini-2.5-flash-native-audio-preview", None, 258),
        ("gemini-2.5-flash-native-audio-preview", "low", 66),
    ],
)
def test_tokens_per_frame_follow_the_media_resolution(
    model: str, resolution: str | None, tokens: int
) -> None:
    assert tokens_per_frame(model, resolution) == tokens  # type: ignore[arg-type]


def test_streamed_frames_are_projected_every_second_frame_per_source() -> None:
    streamed = StreamedFrames(tokens_per_frame=70)
    due = [streamed.add("screen") for _ in range(5)]
    assert due == [False, True, False, True, False]
    assert streamed.add("camera") is False  # counted per source
    assert streamed.tokens("screen") == 350 and streamed.tokens("camera") == 70
    streamed.settled()
    assert streamed.tokens("screen") == 0


@pytest.mark.parametrize(
    "model", ["gemini-3.8-live", "models/gemini-2.5-flash-live", "gemini-live-2.5"]
)
@pytest.mark.parametrize("resolution", [None, "low", "medium", "high"])
def test_the_budget_projection_prices_a_frame_as_the_emulator_bills_it(
    model: str, resolution: MediaResolution | None
) -> None:
    # Two copies of Google's per-frame table (the service must not import the emulator): they
    # must agree, or a screen share would be projected at one price and settled at another.
    wire = None if resolution is None else resolution.upper()
    assert tokens_per_frame(model, resolution) == frame_tokens(model.removeprefix("models/"), wire)
