"""Running the app under uvicorn, with a shutdown that ends voice sessions properly.

Plain uvicorn answers SIGTERM by closing every WebSocket with 1012 before the app hears of it. We
first tell each live session (`session_ended`, reason `server_shutdown`), end its spans and flush
them, then let uvicorn close what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI


class VoiceServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, app: FastAPI, grace_s: float = 5.0, *, signals: bool = True
    ) -> None:
        super().__init__(config)
        self.app = app
        self.grace_s = grace_s
        self.signals = signals
        self.base_url = ""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        # In-process servers (demo, tests) leave the host program's signal handling alone.
        return super().capture_signals() if self.signals else contextlib.nullcontext()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deps = getattr(self.app.state, "bridge_deps", None)
        if deps is not None:
            for server in self.servers:  # no new sessions while we drain
                server.close()
            await deps.hub.drain("server_shutdown", self.grace_s)
        await super().shutdown(sockets)


def uvicorn_config(
    app: FastAPI, host: str, port: int, log_level: str, max_frame_bytes: int
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Frames far over our own limit are refused by the protocol layer itself (close 1009).
        ws_max_size=max(4 * max_frame_bytes, 1 << 16),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


@contextlib.asynccontextmanager
async def serve_in_background(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    max_frame_bytes: int = 64_000,
    grace_s: float = 5.0,
) -> AsyncIterator[VoiceServer]:
    """Run the app on a real socket in this event loop (demo, tests); yields once it serves.

    The bound address is `server.base_url` (port 0 picks a free port).
    """
    config = uvicorn_config(app, host, port, log_level, max_frame_bytes)
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
