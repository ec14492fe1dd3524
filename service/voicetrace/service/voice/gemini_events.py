"""The service's own tool specs and results → google-genai types: pure functions, no I/O.

Server messages → events (`map_message`, `usage_snapshot`) and failure reading (`close_info`,
`is_retryable`) live in `voicetrace.telemetry.instrumentation.genai_mapping`: one mapping,
shared by this adapter and the drop-in instrumentor.
"""

from __future__ import annotations

from google.genai import types
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.tools import FunctionSpec

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
