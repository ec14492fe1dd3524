"""Raw Live server frames → events, with a fast path for the one message that dominates.

A speaking model sends ~25 audio chunks a second per session, each a JSON message holding one
base64 blob. google-genai turns every one into pydantic models first (~190 µs a chunk here);
`decode_frame` recognises exactly that shape — `serverContent.modelTurn.parts[0].inlineData`,
optionally with a piece of `outputTranscription`, and nothing else — and decodes it with `json`
and `base64` (~40 µs). Every other message goes
through the SDK's own parsing, the same calls `AsyncSession.receive()` makes, so its meaning
cannot drift. tests/voice/test_gemini_frames.py pins both paths to the installed SDK: for every
message shape the emulator and the SDK's own types produce, the events are identical.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, cast

from google.genai import _live_converters, errors, types
from voicetrace.service.voice import events as ev
from voicetrace.telemetry.instrumentation.genai_mapping import map_message, sample_rate


def decode_frame(raw: bytes | str) -> list[ev.ModelEvent]:
    """One server frame → its events (raises ValueError for a frame that is not a message,
    `errors.APIError` for an error payload — as the SDK does)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError(f"Failed to parse response: {raw[:80]!r}") from None
    if not isinstance(data, dict):
        raise ValueError("a Live server message must be a JSON object")
    fast = _audio_chunk(data)
    if fast is not None:
        return fast
    return list(map_message(sdk_message(data)))


def sdk_message(data: dict[str, Any]) -> types.LiveServerMessage:
    """Exactly what `AsyncSession._receive` does with a decoded frame (Gemini API, not Vertex)."""
    converted = _live_converters._LiveServerMessage_from_mldev(data)
    if not converted and data:
        # As the SDK does; it passes the code through unchecked (None when there is none).
        errors.APIError.raise_error(cast(int, data.get("code")), data, None)
    return types.LiveServerMessage._from_response(response=converted, kwargs={})


def _audio_chunk(data: dict[str, Any]) -> list[ev.ModelEvent] | None:
    """The events of an audio chunk (with, optionally, a piece of the output transcription)
    if that is all `data` holds, else None (the SDK path decides)."""
    if len(data) != 1:
        return None
    content = data.get("serverContent")
    if not isinstance(content, dict) or not 1 <= len(content) <= 2:
        return None
    events: list[ev.ModelEvent] = []
    if len(content) == 2:
        said = content.get("outputTranscription")
        if not isinstance(said, dict) or not said.keys() <= {"text", "finished"}:
            return None
        text, finished = said.get("text"), said.get("finished", False)
        if not isinstance(text, str) or not isinstance(finished, bool):
            return None
        if text:  # as map_message: an empty transcription is no event
            events.append(ev.OutputTranscript(text, finished))
    turn = content.get("modelTurn")
    if not isinstance(turn, dict) or not turn.keys() <= {"parts", "role"}:
        return None
    parts = turn.get("parts")
    if not isinstance(parts, list) or len(parts) != 1:
        return None
    part = parts[0]
    if not isinstance(part, dict) or len(part) != 1:
        return None
    blob = part.get("inlineData")
    if not isinstance(blob, dict) or not blob.keys() <= {"data", "mimeType"}:
        return None
    encoded = blob.get("data")
    mime = blob.get("mimeType")
    if not isinstance(encoded, str) or not encoded or not isinstance(mime, str | None):
        return None
    try:
        # Either alphabet, as pydantic's base64 bytes accept (Gemini sends the standard one).
        pcm = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None  # let the SDK say what is wrong with it
    if not pcm:
        return None
    events.append(ev.AudioOut(pcm, sample_rate(mime)))
    return events
