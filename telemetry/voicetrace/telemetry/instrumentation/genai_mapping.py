"""google-genai Live server messages → the SDK-independent events: pure functions, no I/O.

`map_message` turns one `LiveServerMessage` into events in the order the tracer (and the
service's bridge) rely on; `usage_snapshot` reads `usageMetadata` as the telemetry's usage type;
`close_info` and `is_retryable` read a failure the SDK or websockets raised. Used by the
service's model adapter and by the drop-in `GenAILiveInstrumentor` alike — one mapping.
Imports google-genai (and websockets, its dependency): only ever imported by code that already
uses the SDK, never by `import voicetrace.telemetry`.
(Moved from `voicetrace.service.voice.gemini_events`, which re-exports every name.)
Works with google-genai 2.x and 3.x: only public `types` fields that both have are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import websockets
from google.genai import errors, types
from voicetrace.telemetry.instrumentation import events as ev
from voicetrace.telemetry.records import ModalityTokens, UsageSnapshot

# Close codes after which a reconnect can succeed: normal close (e.g. after goAway), going
# away, abnormal drop, service restart, try again later. 1007 (invalid argument), 1008 (auth,
# policy, unknown model) and 1011 (internal error) fail again the same way.
RETRYABLE_CLOSE_CODES = frozenset({1000, 1001, 1006, 1012, 1013})
_MODALITIES = frozenset({"TEXT", "AUDIO", "IMAGE", "VIDEO", "DOCUMENT"})


@lru_cache(maxsize=32)
def sample_rate(mime_type: str | None) -> int:
    """`audio/pcm;rate=24000` → 24000 (the Live default when the rate is missing)."""
    for part in (mime_type or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "rate" and value.isdigit():
            return int(value)
    return 24_000


def _seconds(duration: str | None) -> float:
    """A protobuf Duration in JSON (`"5s"`, `"0.250s"`) as seconds."""
    try:
        return float((duration or "0s").rstrip("s") or 0)
    except ValueError:
        return 0.0


def _modalities(details: list[types.ModalityTokenCount] | None) -> tuple[ModalityTokens, ...]:
    out = []
    for d in details or ():
        modality = d.modality.value if d.modality is not None else "TEXT"
        if modality in _MODALITIES:
            out.append(ModalityTokens(modality, d.token_count or 0))
    return tuple(out)


def usage_snapshot(u: types.UsageMetadata) -> UsageSnapshot:
    """Gemini's `usageMetadata` as the telemetry's one usage type (read as reported)."""
    return UsageSnapshot(
        prompt=u.prompt_token_count or 0,
        cached=u.cached_content_token_count or 0,
        response=u.response_token_count or 0,
        tool_use_prompt=u.tool_use_prompt_token_count or 0,
        thoughts=u.thoughts_token_count or 0,
        total=u.total_token_count or 0,
        prompt_details=_modalities(u.prompt_tokens_details),
        cache_details=_modalities(u.cache_tokens_details),
        response_details=_modalities(u.response_tokens_details),
        tool_use_prompt_details=_modalities(u.tool_use_prompt_tokens_details),
    )


_ONLY_CONTENT = frozenset({"server_content"})
_AUDIO_CONTENT = (frozenset({"model_turn"}), frozenset({"model_turn", "output_transcription"}))


def audio_only(msg: types.LiveServerMessage) -> tuple[int, int, str | None] | None:
    """(bytes, sample rate, output transcript text) when `msg` is one chunk of model audio,
    perhaps with its transcript, and nothing else — most of a spoken turn's messages (~120 a
    turn) — else None: `map_message` has the whole mapping.

    For such a message `map_message` yields an `OutputTranscript` (when the text is not empty)
    and one `AudioOut`; this says so without a generator or event objects. Pydantic's
    `model_fields_set` (the fields the SDK parsed from the frame; every other field keeps its
    None default) proves there is nothing else; an SDK that set more fields explicitly would
    only miss this shortcut, never an event."""
    if msg.model_fields_set != _ONLY_CONTENT:
        return None
    content = msg.server_content
    if content is None or content.model_fields_set not in _AUDIO_CONTENT:
        return None
    parts = content.model_turn.parts if content.model_turn is not None else None
    if parts is None or len(parts) != 1:
        return None
    blob = parts[0].inline_data
    if blob is None or not blob.data:
        return None
    transcript = content.output_transcription
    text = transcript.text if transcript is not None else None
    return len(blob.data), sample_rate(blob.mime_type), text


def map_message(msg: types.LiveServerMessage) -> Iterator[ev.ModelEvent]:
    """One server message → events, in the order the bridge and the tracer rely on.

    Usage comes before TurnComplete (Gemini sends both in one message): the turn's billable
    snapshot must be known when the turn closes.
    """
    content = msg.server_content
    if content is not None:
        if content.input_transcription is not None and content.input_transcription.text:
            t = content.input_transcription
            yield ev.InputTranscript(t.text or "", bool(t.finished))
        if content.output_transcription is not None and content.output_transcription.text:
            t = content.output_transcription
            yield ev.OutputTranscript(t.text or "", bool(t.finished))
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                blob = part.inline_data
                if blob is not None and blob.data:
                    yield ev.AudioOut(blob.data, sample_rate(blob.mime_type))
                elif part.text:
                    yield ev.TextOut(part.text, thought=bool(part.thought))
    if msg.tool_call is not None and msg.tool_call.function_calls:
        calls = tuple(
            ev.FunctionCall(fc.id or "", fc.name or "", dict(fc.args or {}))
            for fc in msg.tool_call.function_calls
        )
        yield ev.ToolCall(calls)
    if msg.tool_call_cancellation is not None and msg.tool_call_cancellation.ids:
        yield ev.ToolCallCancellation(tuple(msg.tool_call_cancellation.ids))
    if content is not None:
        if content.interrupted:
            yield ev.Interrupted()
        if content.generation_complete:
            yield ev.GenerationComplete()
    if msg.usage_metadata is not None:
        yield usage_snapshot(msg.usage_metadata)
    if content is not None and content.turn_complete:
        yield ev.TurnComplete()
    if msg.go_away is not None:
        yield ev.GoAway(_seconds(msg.go_away.time_left))
    update = msg.session_resumption_update
    if update is not None and update.new_handle:
        yield ev.ResumptionHandle(update.new_handle, update.resumable is not False)


def close_info(exc: BaseException) -> tuple[int | None, str]:
    """(close code, reason) from whatever the SDK or websockets raised."""
    if isinstance(exc, errors.APIError):
        # Live errors: code = close code, details = the close reason, message = None.
        details = exc.details
        if isinstance(details, dict):
            reason = str(details.get("message") or details.get("error") or details)
        else:
            reason = str(details or exc.message or "")
        return exc.code, reason
    if isinstance(exc, websockets.ConnectionClosed):
        frame = exc.rcvd
        return (frame.code, frame.reason) if frame else (1006, "connection lost")
    if isinstance(exc, websockets.InvalidStatus):
        # The HTTP upgrade was refused (a proxy, or a server that rejects before upgrading).
        return exc.response.status_code, f"HTTP {exc.response.status_code} on connect"
    if isinstance(exc, TimeoutError):
        return None, "timed out"
    return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def is_retryable(code: int | None, exc: BaseException) -> bool:
    if code in RETRYABLE_CLOSE_CODES:
        return True
    # No close code at all: the network, not the server, failed (refused, reset, TLS, timeout).
    return code is None and isinstance(exc, OSError | TimeoutError | websockets.ConnectionClosed)
