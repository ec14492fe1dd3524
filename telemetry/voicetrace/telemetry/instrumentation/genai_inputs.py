"""What an app passes to google-genai's `AsyncSession.send_*` methods, read for the tracer.

Pure functions over the arguments as the app gave them — SDK objects (`types.Blob`,
`types.Content`, `types.FunctionResponse`, …) or their dict forms, which the SDK accepts too —
read by attribute or key, never validated: the SDK does that, and a value we cannot read is
simply not traced. No google-genai import (duck typing), so nothing here depends on the SDK
version beyond the public field names that 2.x and 3.x share.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

INPUT_RATE = 16_000  # Live's input default when the mime type gives none


def field(obj: object, name: str) -> Any:
    """`obj.name` for SDK objects, `obj[name]` for their dict forms, else None."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@lru_cache(maxsize=32)
def input_rate(mime_type: str | None) -> int:
    """`audio/pcm;rate=16000` → 16000; Live input is 16 kHz when no rate is given."""
    for part in (mime_type or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "rate" and value.isdigit():
            return int(value)
    return INPUT_RATE


@dataclass(frozen=True, slots=True)
class AudioChunk:
    pcm: bytes
    sample_rate: int


def audio_chunk(blob: object) -> AudioChunk | None:
    """A PCM audio `Blob` (or dict) as raw bytes; None for other media (video, images)."""
    if blob is None:
        return None
    mime = field(blob, "mime_type") or field(blob, "mimeType") or ""
    if not isinstance(mime, str) or not mime.startswith("audio/"):
        return None
    data = field(blob, "data")
    if isinstance(data, str):  # a dict form may carry base64 text (either alphabet)
        try:
            data = base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=False)
        except (binascii.Error, ValueError):
            return None
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    return AudioChunk(bytes(data), input_rate(mime))


def _contents(turns: object) -> Sequence[object]:
    if turns is None:
        return ()
    if isinstance(turns, str | Mapping) or not isinstance(turns, Sequence):
        return (turns,)
    return turns


def user_text(turns: object) -> str | None:
    """The text of the last user `Content` in `turns` (one, a list, or a bare string); None when
    there is none (e.g. only model history, or a bare `turn_complete`)."""
    last: str | None = None
    for content in _contents(turns):
        if isinstance(content, str):
            last = content
            continue
        role = field(content, "role")
        if role not in (None, "user"):
            continue
        texts = [
            text
            for part in field(content, "parts") or ()
            if isinstance(text := field(part, "text"), str) and text and not field(part, "thought")
        ]
        if texts:
            last = "".join(texts)
    return last


@dataclass(frozen=True, slots=True)
class FunctionResult:
    call_id: str
    response: dict[str, Any]
    error: str | None


def function_results(responses: object) -> Iterator[FunctionResult]:
    """`FunctionResponse`s (one, a list, or dicts) as results; an `{"error": "…"}` response
    is a failed call, the convention the Live docs and this service use."""
    items = responses if isinstance(responses, Sequence) else (responses,)
    for item in items:
        call_id = field(item, "id")
        if not call_id:
            continue
        response = field(item, "response")
        response = dict(response) if isinstance(response, Mapping) else {}
        error = response.get("error")
        yield FunctionResult(str(call_id), response, str(error) if error else None)


# -- the deprecated `send(input=…, end_of_turn=…)` ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendInput:
    """What one deprecated `send()` carried, sorted into the three kinds of input."""

    audio: tuple[AudioChunk, ...] = ()
    text: str | None = None
    turn_complete: bool = False
    results: tuple[FunctionResult, ...] = ()


def send_input(value: object, end_of_turn: bool) -> SendInput:
    """Classify `send()`'s input by its fields, as the SDK's own parser does."""
    if value is None:
        return SendInput(turn_complete=bool(end_of_turn))
    if isinstance(value, str):
        return SendInput(text=value, turn_complete=bool(end_of_turn))
    if field(value, "function_responses") is not None:  # LiveClientToolResponse
        return SendInput(results=tuple(function_results(field(value, "function_responses"))))
    if field(value, "media_chunks") is not None:  # LiveClientRealtimeInput
        chunks = (audio_chunk(b) for b in field(value, "media_chunks") or ())
        return SendInput(audio=tuple(c for c in chunks if c is not None))
    if field(value, "turns") is not None or field(value, "turn_complete") is not None:
        # LiveClientContent
        return SendInput(
            text=user_text(field(value, "turns")),
            turn_complete=bool(field(value, "turn_complete")),
        )
    if field(value, "mime_type") is not None:  # a Blob
        chunk = audio_chunk(value)
        return SendInput(audio=(chunk,) if chunk is not None else ())
    if field(value, "id") is not None and field(value, "response") is not None:
        return SendInput(results=tuple(function_results(value)))  # one FunctionResponse
    first = value[0] if isinstance(value, Sequence) and value else None
    if first is not None and field(first, "response") is not None:
        return SendInput(results=tuple(function_results(value)))  # FunctionResponses
    return SendInput(text=user_text(value), turn_complete=bool(end_of_turn))  # Content(s)
