"""Request limits that act before any parsing: body size (413) and body read time (408).

`RequestLimits` is plain ASGI middleware, so it sees the bytes before FastAPI does: a declared
`Content-Length` over the cap is refused without reading a byte, and a body sent without one
(chunked) is counted as it streams and cut off at the cap — a 100 MB JSON body is never buffered,
let alone parsed. While a body is still incomplete, each chunk must arrive within the body
timeout, so a client trickling a body cannot hold a worker for long. Header timeouts belong to
the HTTP protocol itself (`voicetrace.service.server`). WebSockets pass through untouched (their
frames are limited by `ws_max_size` and the bridge).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from voicetrace.service.settings import Settings


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_declared_length(scope)
        except _Refused as refused:
            await _reply(send, refused)
            return
        # FastAPI turns any exception raised while it reads the body into a generic 400, so the
        # refusal is remembered here and replaces whatever response the app then starts.
        refusal: list[_Refused] = []
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reply(send, refusal[0])
                return  # the app's own response to the aborted body is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._limited(receive, refusal), guarded_send)
        except _Refused as refused:
            if not started:
                await _reply(send, refused)
            # Otherwise the response is under way: uvicorn closes the connection.

    def _check_declared_length(self, scope: Scope) -> None:
        for name, value in scope.get("headers", ()):
            if name != b"content-length":
                continue
            try:
                length = int(value)
            except ValueError:
                raise _Refused(400, "bad_request", "invalid Content-Length header") from None
            if length > self.max_body_bytes:
                raise _Refused(413, "body_too_large", self._too_large())

    def _too_large(self) -> str:
        return f"request body over {self.max_body_bytes} bytes (VOICETRACE_MAX_BODY_BYTES)"

    def _limited(self, receive: Receive, refusal: list[_Refused]) -> Receive:
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is disconnect waiting, no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                timeout = f"request body not received within {self.body_timeout_s:g} s"
                refusal.append(_Refused(408, "body_timeout", timeout))
                raise refusal[-1] from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refusal.append(_Refused(413, "body_too_large", self._too_large()))
                    raise refusal[-1]
                complete = not message.get("more_body", False)
            return message

        return limited_receive


async def _reply(send: Send, refused: _Refused) -> None:
    body = json.dumps({"detail": {"code": refused.code, "message": refused.message}}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: do not reuse the socket
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_request_limits(app: FastAPI, settings: Settings) -> None:
    """Put `RequestLimits` in front of everything else in `app`."""
    options: dict[str, Any] = {
        "max_body_bytes": settings.max_body_bytes,
        "body_timeout_s": settings.http_body_timeout_s,
    }
    app.add_middleware(RequestLimits, **options)
