"""Shared fixtures: the Gemini Live emulator, the service on a real uvicorn socket, telemetry.

Nothing here mocks our own code: the service runs as in production, against the emulator over
TLS WebSockets, and its spans go through the real OTel SDK.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from voicetrace.demo.tools import demo_registry
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.api.auth import mint_token
from voicetrace.service.app import create_app
from voicetrace.service.server import VoiceServer, serve_in_background
from voicetrace.service.settings import Settings
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import PriceTable, VoiceTelemetry
from voicetrace.telemetry.setup import configure_telemetry

JWT_SECRET = "test-secret-0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _quiet_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests export only where they say: no stray OTLP to localhost:4318, no Langfuse."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LANGFUSE_", "VOICETRACE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")


@dataclass
class RunningService:
    """The service under test, on a real socket, with its telemetry captured in memory."""

    server: VoiceServer
    settings: Settings
    telemetry: VoiceTelemetry
    spans: InMemorySpanExporter
    emulator: Emulator
    http: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def token(self, user: str) -> str:
        return self.tokens.setdefault(user, mint_token(user, JWT_SECRET))

    def ws_url(self, session_id: str) -> str:
        return self.base_url.replace("http", "ws", 1) + f"/v1/voice/{session_id}"

    async def create_session(self, user: str = "alice", **body: Any) -> dict[str, Any]:
        body.setdefault("mode", "test")
        response = await self.http.post(
            "/live-sessions", json=body, headers={"Authorization": f"Bearer {self.token(user)}"}
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def get_session(self, session_id: str, user: str = "alice") -> dict[str, Any]:
        response = await self.http.get(
            f"/live-sessions/{session_id}", headers={"Authorization": f"Bearer {self.token(user)}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def finished_spans(self) -> list[Any]:
        self.telemetry.force_flush(5.0)
        return list(self.spans.get_finished_spans())


StartService = Callable[..., Any]

# Folders whose tests run the whole product end to end (real servers, subprocesses, browsers).
E2E_FOLDERS = frozenset({"service", "browser", "ops", "reliability"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if folder in E2E_FOLDERS:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
async def start_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartService]:
    """Factory: `svc = await start_service(scenario=Scenario(...), **settings_overrides)`."""
    counter = itertools.count()
    async with AsyncExitStack() as stack:

        async def start(
            scenario: Scenario | None = None,
            telemetry: VoiceTelemetry | None = None,
            extra_processors: tuple[Any, ...] = (),
            tools: ToolRegistry | None = None,
            **overrides: Any,
        ) -> RunningService:
            emulator = await stack.enter_async_context(Emulator(scenario=scenario))
            for name, value in emulator.env().items():
                monkeypatch.setenv(name, value)
            memory = InMemorySpanExporter()
            if telemetry is None:
                telemetry = configure_telemetry(
                    service_name="voicetrace-test",
                    pricing=PriceTable.load(None),
                    extra_processors=[SimpleSpanProcessor(memory), *extra_processors],
                    usage_wait_s=overrides.pop("usage_wait_s", 0.5),
                )
                stack.callback(telemetry.shutdown, 2.0)
            settings = Settings(
                jwt_secret=JWT_SECRET,
                sqlite_path=tmp_path / f"svc-{next(counter)}.db",
                gemini_api_key=emulator.api_key,
                **overrides,
            )
            app = create_app(
                settings,
                telemetry=telemetry,
                tools=tools if tools is not None else demo_registry(settings.tool_timeout_s),
            )
            server = await stack.enter_async_context(
                serve_in_background(
                    app, grace_s=3.0, max_frame_bytes=settings.max_frame_bytes, settings=settings
                )
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.base_url, timeout=10)
            )
            return RunningService(server, settings, telemetry, memory, emulator, http)

        yield start
