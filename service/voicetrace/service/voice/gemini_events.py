"""google-genai Live types ⇄ the SDK-independent events: pure functions, no I/O.

Server messages → events (`map_message`, `usage_snapshot`) and failure reading (`close_info`,
`is_retryable`) moved to `voicetrace.telemetry.instrumentation.genai_mapping`, shared with the
drop-in instrumentor, and are re-exported here; `function_declaration`/`function_response` (our
tool specs → SDK) stay, they are the service's own.
"""

from __future__ import annotations

from google.genai import types
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.tools import FunctionSpec
from voicetrace.telemetry.instrumentation.genai_mapping import (
    RETRYABLE_CLOSE_CODES,
    close_info,
    is_retryable,
    map_message,
    usage_snapshot,
)

__all__ = [
    "RETRYABLE_CLOSE_CODES",
    "close_info",
    "function_declaration",
    "function_response",
    "is_retryable",
    "map_message",
    "usage_snapshot",
]


# -- events/specs → SDK ---------------------------------------------------------------------------


def function_declaration(spec: FunctionSpec) -> types.FunctionDeclaration:
    """FunctionSpec → SDK declaration. The behaviour is always explicit: an unset behaviour means
    NON_BLOCKING on gemini-3.8-live but BLOCKING on older models."""
    try:
        schema = types.Schema.model_validate(spec.parameters) if spec.parameters else None
    except ValueError as exc:
        raise ValueError(
            f"tool {spec.name!r}: parameters are not a valid Gemini schema: {exc}"
        ) from exc
    behavior = types.Behavior.NON_BLOCKING if spec.non_blocking else types.Behavior.BLOCKING
    return types.FunctionDeclaration(
        name=spec.name, description=spec.description, parameters=schema, behavior=behavior
    )


def function_response(result: ev.ToolResult) -> types.FunctionResponse:
    scheduling = types.FunctionResponseScheduling(result.scheduling) if result.scheduling else None
    return types.FunctionResponse(
        id=result.id, name=result.name, response=result.response, scheduling=scheduling
    )
