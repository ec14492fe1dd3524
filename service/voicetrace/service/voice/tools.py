"""The tool registry: declarations for the model and safe, bounded execution of its calls.

Tools are typed Python callables (see `voice.tool_schema` for what a signature may hold); the
registry declares them, binds the model's arguments, and runs the call under a timeout. `run()`
never raises: whatever goes wrong becomes an error outcome the model can read and recover from,
so a broken tool cannot break a live session.

Nothing here imports `google-genai`: the model adapter turns `FunctionSpec` and `ToolResult` into
SDK types.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, overload

from voicetrace.service.voice.events import FunctionCall, Scheduling, ToolResult
from voicetrace.service.voice.tool_schema import (
    ArgumentError,
    FunctionSpec,
    Tool,
    ToolFn,
    build_tool,
)

__all__ = ["ArgumentError", "FunctionSpec", "ToolError", "ToolOutcome", "ToolRegistry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """The result of running one call; `response` is exactly what the model will see."""

    call_id: str
    name: str
    response: dict[str, Any]
    error: str | None
    duration_s: float
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class ToolError(Exception):
    """Raise from a tool to send the model a clean error message (no exception type prefix)."""


def _jsonable(value: Any) -> Any:
    """Tool results as JSON values: dataclasses and tuples are converted, the rest must be JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, ensure_ascii=False))


class ToolRegistry:
    """The tools of one app: declarations for the model and safe, bounded execution of calls."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._tools: dict[str, Tool] = {}

    @overload
    def register(
        self,
        fn: ToolFn,
        *,
        name: str | None = ...,
        description: str | None = ...,
        non_blocking: bool = ...,
        scheduling: Scheduling = ...,
    ) -> ToolFn: ...

    @overload
    def register(
        self,
        fn: None = ...,
        *,
        name: str | None = ...,
        description: str | None = ...,
        non_blocking: bool = ...,
        scheduling: Scheduling = ...,
    ) -> Callable[[ToolFn], ToolFn]: ...

    def register(
        self,
        fn: ToolFn | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        non_blocking: bool = False,
        scheduling: Scheduling = "WHEN_IDLE",
    ) -> ToolFn | Callable[[ToolFn], ToolFn]:
        """Register `fn` (directly or as `@registry.register(...)`); returns `fn` unchanged.

        Bad signatures fail here, at startup, not mid-conversation. `scheduling` is how a
        NON_BLOCKING tool's result enters the conversation (WHEN_IDLE, INTERRUPT or SILENT).
        """

        def add(f: ToolFn) -> ToolFn:
            tool = build_tool(f, name, description, non_blocking, scheduling)
            if tool.spec.name in self._tools:
                raise ValueError(f"a tool named {tool.spec.name!r} is already registered")
            self._tools[tool.spec.name] = tool
            return f

        return add if fn is None else add(fn)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> list[FunctionSpec]:
        """The declarations to send at connect, in registration order."""
        return [t.spec for t in self._tools.values()]

    def spec(self, name: str) -> FunctionSpec | None:
        tool = self._tools.get(name)
        return tool.spec if tool else None

    async def run(self, call: FunctionCall) -> ToolOutcome:
        """Run one call. Never raises (except when the caller cancels it): every failure —
        unknown tool, bad arguments, exception, timeout, non-JSON result — is an error outcome.

        A sync tool runs in a worker thread; on timeout the thread cannot be killed and finishes
        in the background, its result discarded.
        """
        started = time.perf_counter()

        def fail(message: str, *, cancelled: bool = False) -> ToolOutcome:
            return ToolOutcome(
                call.id, call.name, {"error": message}, message,
                time.perf_counter() - started, cancelled,
            )  # fmt: skip

        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return fail(f"unknown tool '{call.name}' (available: {known})")
        try:
            kwargs = tool.bind(call.args)
        except ArgumentError as exc:
            return fail(f"invalid arguments for {call.name}: {exc}")
        try:
            if tool.is_async:
                pending: Awaitable[Any] = tool.fn(**kwargs)
            else:
                pending = asyncio.to_thread(tool.fn, **kwargs)
            result = await asyncio.wait_for(pending, self.timeout_s)
        except TimeoutError:
            return fail(f"tool '{call.name}' timed out after {self.timeout_s:g} s")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller cancelled us (barge-in): let cancellation propagate
            return fail(f"tool '{call.name}' was cancelled", cancelled=True)
        except ToolError as exc:
            return fail(str(exc) or f"tool '{call.name}' failed")
        except Exception as exc:
            # The type and message only: arguments may hold user content, so they are not logged.
            log.warning("tool %s raised %s", call.name, type(exc).__name__, exc_info=True)
            # Only the type reaches the model and the client: an unexpected exception's message
            # can carry internals (URLs, credentials). Raise ToolError to say something on purpose.
            return fail(f"tool '{call.name}' failed: {type(exc).__name__}")
        try:
            response = {"result": _jsonable(result)}
        except (TypeError, ValueError) as exc:
            return fail(f"tool '{call.name}' returned a value that is not JSON: {exc}")
        return ToolOutcome(call.id, call.name, response, None, time.perf_counter() - started)

    def result_for(self, outcome: ToolOutcome) -> ToolResult:
        """The message for the model; `scheduling` is set only for NON_BLOCKING tools."""
        tool = self._tools.get(outcome.name)
        scheduling = tool.scheduling if tool is not None and tool.spec.non_blocking else None
        return ToolResult(outcome.call_id, outcome.name, outcome.response, scheduling)
