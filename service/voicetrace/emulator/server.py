"""`Emulator`: a local Gemini Live (and REST) server that the unmodified google-genai SDK talks to.

It runs uvicorn with TLS inside the caller's event loop, so tests and the in-process demo just
`await emulator.start()`. Point any `genai.Client()` at it with the variables of `env()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from voicetrace.emulator.rest import RestApi
from voicetrace.emulator.resumption import ResumptionStore
from voicetrace.emulator.scenario import Scenario
from voicetrace.emulator.session import LiveSession
from voicetrace.emulator.state import EmulatorState
from voicetrace.emulator.tls import CertFiles, write_certificates
from voicetrace.emulator.tokens import TokenStore, utcnow
from voicetrace.emulator.wire import WireLog

_LIVE_PATH = re.compile(
    r"^google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # In-process: the host program keeps its own signal handling (Ctrl-C, SIGTERM), so
        # uvicorn's handlers are never installed. (A generator context manager, like the
        # method it overrides.)
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # A TLS close waits for the peer's close_notify, which an idle keep-alive client (the
        # SDK's connection pool) never sends: uvicorn would then wait out its whole graceful
        # timeout. Ask politely, then abort what is still there.
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.05)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


class Emulator:
    """A Gemini Live emulator on `https://host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "emulator-key",
        *,
        clock: Callable[[], datetime] = utcnow,
        wire: WireLog | None = None,
        resumptions: ResumptionStore | None = None,
    ) -> None:
        """`wire` and `resumptions` replace the default bounded stores (see their modules)."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.wire = WireLog() if wire is None else wire  # an empty log is falsy
        self.tokens = TokenStore(clock)
        self._state = EmulatorState(
            self.scenario,
            api_key,
            self.wire,
            self.tokens,
            ResumptionStore() if resumptions is None else resumptions,
        )
        self._rest = RestApi(api_key, self.tokens)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._certs: CertFiles | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                WebSocketRoute("/ws/{name}", self._live),
                Route("/{version}/models/{target}", self._rest.models, methods=["POST"]),
                Route("/{version}/auth_tokens", self._rest.auth_tokens, methods=["POST"]),
            ]
        )

    # -- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`https://127.0.0.1:PORT`, without a trailing slash (the SDK would make `//ws/...`)."""
        self._require_started()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def cert_path(self) -> str:
        """PEM of the emulator's certificate authority: what `SSL_CERT_FILE` must point at."""
        self._require_started()
        assert self._certs is not None
        return str(self._certs.ca_path)

    def env(self) -> dict[str, str]:
        """The variables that point a plain `genai.Client()` at this emulator."""
        return {
            "GOOGLE_GEMINI_BASE_URL": self.base_url,
            "SSL_CERT_FILE": self.cert_path,
            "GEMINI_API_KEY": self.api_key,
        }

    @property
    def connections(self) -> int:
        """Live connections accepted so far."""
        return self._state.connections

    @property
    def active_connections(self) -> int:
        return len(self._state.sessions)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._tmp = tempfile.TemporaryDirectory(prefix="voicetrace-emulator-")
        self._certs = write_certificates(Path(self._tmp.name), (self.host,))
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            ssl_certfile=str(self._certs.cert_path),
            ssl_keyfile=str(self._certs.key_path),
            ws="websockets-sansio",
            ws_ping_interval=None,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self.stop()
                raise RuntimeError("the emulator could not start (is the port free?)")
            await asyncio.sleep(0.005)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every Live connection (1001), stop serving, delete the certificates."""
        try:
            sessions = list(self._state.sessions)
            for session in sessions:
                await session.close(1001, "The emulator is shutting down.")
            if self._server is not None and self._task is not None:
                self._server.should_exit = True
                with contextlib.suppress(Exception):
                    await self._task
        finally:
            self._server = self._task = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- fault injection -----------------------------------------------------------------------

    def go_away(self, time_left_s: float = 1.0) -> int:
        """Send `goAway` on every open Live connection, then close each (1000) after the time
        left. Returns how many connections were told."""
        sessions = [s for s in self._state.sessions if s.setup is not None and not s.closed]
        for session in sessions:
            session.go_away(time_left_s)
        return len(sessions)

    def drop_connections(self) -> int:
        """Abort every open Live socket at the TCP level: no close frame (the client sees 1006)."""
        if self._server is None:
            return 0
        scopes = {id(s.ws.scope) for s in self._state.sessions}
        dropped = 0
        for protocol in list(self._server.server_state.connections):
            scope = getattr(protocol, "scope", None)
            transport = getattr(protocol, "transport", None)
            if scope is not None and id(scope) in scopes and transport is not None:
                transport.abort()
                dropped += 1
        return dropped

    # -- routes --------------------------------------------------------------------------------

    async def _live(self, websocket: WebSocket) -> None:
        match = _LIVE_PATH.match(websocket.path_params["name"])
        if match is None:
            await websocket.close(1008, "Unknown method.")
            return
        version, method = match.groups()
        await LiveSession(websocket, self._state, version, method).run()

    def _require_started(self) -> None:
        if self._server is None:
            raise RuntimeError("the emulator is not started: `await emulator.start()` first")
