"""Running the app under uvicorn, with a shutdown that ends voice sessions properly.

Plain uvicorn answers SIGTERM by closing every WebSocket with 1012 before the app hears of it. We
first tell each live session (`session_ended`, reason `server_shutdown`), end its spans and flush
them, then let uvicorn close what is left.

The HTTP protocol is uvicorn's h11 one plus a header timeout: uvicorn (0.54) has none, so a
client that sends half a request line used to hold its connection for as long as it liked. Header
size (`h11_max_incomplete_event_size`), keep-alive and WebSocket compression come from Settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Generator

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from voicetrace.service.api.log_redaction import install_log_redaction
from voicetrace.service.settings import Settings
from voicetrace.service.voice.video import max_text_bytes


class VoiceServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, app: FastAPI, grace_s: float = 5.0, *, signals: bool = True
    ) -> None:
        super().__init__(config)
        self.app = app
        self.grace_s = grace_s
        self.signals = signals
        self.base_url = ""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # In-process servers (demo, tests) leave the host program's signal handling alone.
        if self.signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deps = getattr(self.app.state, "bridge_deps", None)
        if deps is not None:
            for server in self.servers:  # no new sessions while we drain
                server.close()
            await deps.hub.drain("server_shutdown", self.grace_s)
        await super().shutdown(sockets)


class RedactTokenFilter(logging.Filter):
    """Browsers may pass the bearer token as `?token=`; uvicorn logs WebSocket paths with their
    query strings. Blank the token out of every record before any handler sees it."""

    _TOKEN = re.compile(r"([?&](?:token|key|access_token)=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                self._TOKEN.sub(r"\1[REDACTED]", a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = self._TOKEN.sub(r"\1[REDACTED]", record.msg)
        return True


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head (request line + headers)
    does not arrive within `header_timeout_s`. Uses only the h11 connection state (`their_state`
    is IDLE until a whole request head has been parsed) and the protocol's transport."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # part of a (next) request head: it must complete in time
        else:
            self._disarm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.debug("closing a connection whose request head is too slow")
            self.transport.close()


def _http_protocol(header_timeout_s: float) -> type[HeaderTimeoutH11Protocol]:
    return type(
        "HeaderTimeoutH11Protocol",
        (HeaderTimeoutH11Protocol,),
        {"header_timeout_s": header_timeout_s},
    )


def uvicorn_config(
    app: FastAPI,
    host: str,
    port: int,
    log_level: str,
    max_frame_bytes: int,
    *,
    settings: Settings | None = None,
) -> uvicorn.Config:
    """The uvicorn config for `app`; HTTP limits come from `settings` (default: the
    environment's)."""
    settings = settings or Settings()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_http_protocol(settings.http_header_timeout_s),
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_keep_alive=settings.http_keep_alive_s,
        # uvicorn's websockets protocols (sans-I/O, the default, and legacy) both offer
        # permessage-deflate when this is on; audio frames do not compress, so it is off.
        ws_per_message_deflate=settings.ws_compression,
        # The bridge answers `frame_too_large` up to 4× a frame kind's limit and closes 1009
        # (after `session_ended`) beyond; frames beyond this are refused by the protocol layer
        # itself (1009, no goodbye), so it leaves room for 4× the largest camera/screen frame.
        ws_max_size=max(
            16 * max_frame_bytes,
            4 * max_text_bytes(settings.max_video_frame_bytes) + 1,
            1 << 16,
        ),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    # After Config(): it (re)configures uvicorn's loggers; filters on them survive that.
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokenFilter) for f in logger.filters):
            logger.addFilter(RedactTokenFilter())
    install_log_redaction()
    return config


@contextlib.asynccontextmanager
async def serve_in_background(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    max_frame_bytes: int = 64_000,
    grace_s: float = 5.0,
    settings: Settings | None = None,
) -> AsyncIterator[VoiceServer]:
    """Run the app on a real socket in this event loop (demo, tests); yields once it serves.

    The bound address is `server.base_url` (port 0 picks a free port).
    """
    config = uvicorn_config(app, host, port, log_level, max_frame_bytes, settings=settings)
    server = VoiceServer(config, app, grace_s, signals=False)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # surface the startup error
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        server.base_url = f"http://{bound[0]}:{bound[1]}"
        yield server
    finally:
        server.should_exit = True
        await task
