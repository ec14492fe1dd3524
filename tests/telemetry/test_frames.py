"""Image tokens split camera vs screen by the frames forwarded (`telemetry.frames`)."""

from __future__ import annotations

import pytest
from voicetrace.telemetry import ModalityTokens, UsageSnapshot
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.frames import split_image_tokens

from tests.telemetry.conftest import Traced, session_info


@pytest.mark.parametrize(
    ("image", "camera", "screen", "expected"),
    [
        (280, 3, 1, (210, 70)),
        (100, 1, 2, (33, 67)),  # the remainder (under one token) goes to screen
        (7, 1, 1, (3, 4)),
        (420, 0, 6, (0, 420)),
        (420, 6, 0, (420, 0)),
        (500, 0, 0, (0, 0)),  # no frames forwarded: unattributed
        (0, 3, 3, (0, 0)),
    ],
)
def test_split_is_proportional_to_frames_in_whole_tokens_that_add_up(
    image: int, camera: int, screen: int, expected: tuple[int, int]
) -> None:
    got = split_image_tokens(image, camera, screen)
    assert got == expected
    assert sum(got) == (image if camera + screen else 0)


def _usage(image: int) -> UsageSnapshot:
    details = (ModalityTokens("TEXT", 50), ModalityTokens("IMAGE", image))
    return UsageSnapshot(prompt=50 + image, response=10, total=60 + image, prompt_details=details)


def test_the_chat_span_and_summaries_carry_the_split_of_the_frames_seen_at_usage(
    traced: Traced,
) -> None:
    trace = traced.tel.start_session(session_info())
    for _ in range(2):
        trace.video_frame("camera")  # before any turn: counted to the next one
    trace.video_frame("screen")
    trace.user_text("what is this?")
    trace.model_audio(4_800)
    trace.usage(_usage(210))  # 3 frames of 70, the context the model re-bills
    trace.video_frame("screen")  # after the usage: in turn 1's frames, not in its split
    summary = trace.turn_complete()
    session = trace.end()
    assert summary is not None and (summary.camera_tokens, summary.screen_tokens) == (140, 70)
    assert (summary.camera_frames, summary.screen_frames) == (2, 2)
    chat = traced.one("chat").attributes
    assert chat[k.USAGE_CAMERA_TOKENS] == 140 and chat[k.USAGE_SCREEN_TOKENS] == 70
    assert chat[k.VIDEO_CAMERA_FRAMES] == 2 and chat[k.VIDEO_SCREEN_FRAMES] == 2
    assert session is not None
    assert (session.camera_tokens, session.screen_tokens) == (140, 70)
    assert (session.camera_frames, session.screen_frames) == (2, 2)
    root = traced.one("voice_session").attributes
    assert root[k.SESSION_CAMERA_TOKENS] == 140 and root[k.SESSION_SCREEN_FRAMES] == 2


def test_a_bad_frame_source_is_counted_not_raised(traced: Traced) -> None:
    trace = traced.tel.start_session(session_info())
    trace.video_frame("window")  # type: ignore[arg-type]
    session = trace.end()
    assert session is not None and session.camera_frames == session.screen_frames == 0
