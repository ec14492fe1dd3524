"""What Langfuse's UI needs beyond semconv, as plain functions the span mapping calls.

- **ChatML** for generations: Langfuse's chat view picks a provider adapter from the
  observation's name/model (a `gemini` name selects one that reads `parts[].text`), so semconv
  messages (`{role, parts: [{type, content}]}`) render as empty messages. Plain
  `[{"role": …, "content": "…"}]` lists render under every adapter; tool calls and results use
  the OpenAI shapes (`assistant` + `tool_calls`, `tool` + `tool_call_id`), contents as strings.
- **EVENT observations** for voice events: Langfuse drops span events, so what must be visible
  in its timeline is a zero-length child span with `langfuse.observation.type = event`.

Only ever called with content already allowed (capture + consent) and texts already redacted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from voicetrace.telemetry import keys as k
from voicetrace.telemetry.turns import ToolRecord

Message = dict[str, Any]

_JSON = json.JSONEncoder(ensure_ascii=False)
_EVENT_LEVELS = {
    k.EV_MODEL_ERROR: k.LEVEL_ERROR,
    k.EV_BUDGET_WARNING: k.LEVEL_WARNING,
    k.EV_BUDGET_PAUSED: k.LEVEL_WARNING,
}


def chatml_input(
    system: list[Message],
    said: str | None,
    tools: Iterable[ToolRecord],
    redact_json: Callable[[Any], str],
    redact_error: Callable[[str], str],
) -> list[Message]:
    """What the model was given: the system prompt, the user's words, then each tool call it
    made and the result (or error) it got back."""
    messages = list(system)
    if said:
        messages.append({"role": "user", "content": said})
    for tool in tools:
        function = {"name": tool.name, "arguments": redact_json(tool.args)}
        call = {"id": tool.call_id, "type": "function", "function": function}
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        if tool.response is not None or tool.error:
            result = (
                redact_json(tool.response)
                if tool.response is not None
                else redact_error(tool.error or "")
            )
            messages.append(
                {"role": "tool", "tool_call_id": tool.call_id, "name": tool.name, "content": result}
            )
    return messages


def chatml_json(messages: list[Message]) -> str:
    return _JSON.encode(messages)


def event_attributes(
    base: Mapping[str, Any], name: str, attrs: Mapping[str, Any], turn: int | None
) -> tuple[dict[str, Any], str | None]:
    """An EVENT observation's attributes and, for an error event, its (redacted) message: the
    event's own attributes mirrored as filterable `langfuse.observation.metadata.<key>`."""
    level = _EVENT_LEVELS.get(name, k.LEVEL_DEFAULT)
    out: dict[str, Any] = {**base, k.LF_LEVEL: level}
    for key, value in attrs.items():
        out[k.obs_metadata(key)] = value
    if turn is not None:
        out[k.TURN_NUMBER] = turn
        out[k.obs_metadata("turn")] = turn
    error = None
    if level == k.LEVEL_ERROR:
        error = str(attrs.get("reason") or name)
        out[k.ERROR_TYPE] = name
        out[k.LF_STATUS_MESSAGE] = error
    return out, error
