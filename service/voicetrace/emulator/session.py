"""One Live connection: the setup handshake (key or ephemeral token), then the read loop.

The rest of a session's behaviour is layered beneath `LiveSession`: `connection` (frames,
close, goAway), `generation` (the model's turns and barge-in), `tool_responses` and
`user_input` (client messages).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocketDisconnect
from voicetrace.emulator.protocol import CloseError, has, pick
from voicetrace.emulator.setup import parse_setup
from voicetrace.emulator.tokens import PREFIX, constrain
from voicetrace.emulator.tool_responses import ToolResponses
from voicetrace.emulator.usage import INPUT_RATE
from voicetrace.emulator.user_input import UserInput
from voicetrace.emulator.vad import Endpointer


class LiveSession(UserInput, ToolResponses):
    async def run(self) -> None:
        await self.ws.accept()
        self.state.connections += 1
        self.state.sessions.add(self)
        try:
            await self._handshake()
            while True:
                await self._handle(await self._receive())
        except CloseError as exc:
            await self.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            self.state.sessions.discard(self)
            for task in [self.generation, *self._tasks]:
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            pending = [t for t in [self.generation, *self._tasks] if t is not None]
            if pending:
                await asyncio.wait(pending)

    # -- setup ---------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        credential = self._credential()
        first = await self._receive()
        if not has(first, "setup"):
            raise CloseError(1007, "Invalid JSON payload: the first message must be setup.")
        raw_setup = pick(first, "setup")
        if self.constrained:
            if not credential.startswith(PREFIX):
                raise CloseError(1008, "Unauthenticated: an ephemeral auth token is required.")
            resuming = bool(pick(pick(raw_setup, "sessionResumption"), "handle"))
            token = self.state.tokens.authorize(credential, resuming=resuming)
            raw_setup = constrain(raw_setup if isinstance(raw_setup, dict) else {}, token)
        elif not credential:
            raise CloseError(1008, "Method doesn't allow unregistered callers (no API key).")
        elif credential.startswith(PREFIX):
            raise CloseError(
                1008, "Auth tokens are only accepted by BidiGenerateContentConstrained."
            )
        elif credential != self.state.api_key:
            raise CloseError(1008, "API key not valid. Please pass a valid API key.")
        setup = parse_setup(raw_setup, self.scenario.silence_duration_ms, self.version)
        if setup.resume_handle:
            saved = self.state.resumptions.restore(setup.resume_handle)
            if saved is None:
                raise CloseError(1008, "Invalid session resumption handle.")
            self.conv = saved
        else:
            self.conv.context.text = setup.system_tokens + setup.tools_tokens
        self.setup = setup
        self.vad = Endpointer(setup.silence_duration_ms, INPUT_RATE, self.scenario.vad_threshold)
        await self.send({"setupComplete": {}})
        if self.scenario.go_away_at_s is not None:
            self._spawn(self._go_away_at(self.scenario.go_away_at_s))

    def _credential(self) -> str:
        """The key or token of the upgrade request, wherever the client put it."""
        headers, query = self.ws.headers, self.ws.query_params
        authorization = headers.get("authorization", "")
        if self.constrained:
            for candidate in (
                query.get("access_token"),
                authorization.removeprefix("Token ").strip()
                if authorization.startswith("Token ")
                else None,
            ):
                if candidate:
                    return candidate
        return headers.get("x-goog-api-key") or query.get("key") or query.get("access_token") or ""

    # -- client messages -----------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        if has(message, "clientContent"):
            await self._client_content(pick(message, "clientContent") or {})
        elif has(message, "realtimeInput"):
            await self._realtime_input(pick(message, "realtimeInput") or {})
        elif has(message, "toolResponse"):
            await self._tool_response(pick(message, "toolResponse") or {})
        elif has(message, "setup"):
            raise CloseError(1007, "Invalid argument: setup must be the first and only setup.")
        else:
            raise CloseError(1007, f"Invalid JSON payload: unknown message {sorted(message)}.")
