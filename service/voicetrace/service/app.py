"""The FastAPI application, built by `create_app` (one per process in production, one per test).

The lifespan owns every shared resource — database, session store, telemetry, tools and the hub of
live bridges — and releases them in reverse order, each step bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from voicetrace.service.api import budgets as budgets_api
from voicetrace.service.api import health, live_sessions, observability, voice
from voicetrace.service.api.errors import register_error_handlers
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.store import SessionStore
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget_policy import BudgetPolicy
from voicetrace.service.voice.deps import BridgeDeps
from voicetrace.service.voice.gemini import GeminiClients, GeminiLive
from voicetrace.service.voice.hub import VoiceHub
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import PriceTable, VoiceTelemetry
from voicetrace.telemetry.setup import configure_telemetry

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    telemetry: VoiceTelemetry | None = None,
    tools: ToolRegistry | None = None,
) -> FastAPI:
    """Build the app. Pass `telemetry` to share one (tests, the demo); otherwise the app
    configures its own from the standard OTEL_* / LANGFUSE_* environment and shuts it down.
    `tools` are the functions the model may call; the default is none."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.effective_database_url)
        await db.create_schema()
        store = SessionStore(db)
        recovered = await store.recover_after_crash()
        if recovered:
            log.warning("closed %d session(s) left open by a previous run", recovered)
        owns_telemetry = telemetry is None
        tel = telemetry or configure_telemetry(
            service_name="voicetrace",
            pricing=PriceTable.load(settings.prices_file),
            usage_wait_s=settings.usage_wait_s,
        )
        budgets = await BudgetPolicy.start(db, settings, tel.pricing)  # usage ledger, daily
        app.state.budgets = budgets
        hub = VoiceHub()
        key = settings.gemini_api_key
        clients = GeminiClients(key.get_secret_value() if key else None)
        app.state.settings = settings
        app.state.store = store
        app.state.session_listener = hub  # REST pause/resume/end reach the live bridge
        app.state.bridge_deps = BridgeDeps(
            settings=settings,
            store=store,
            telemetry=tel,
            tools=tools if tools is not None else ToolRegistry(timeout_s=settings.tool_timeout_s),
            hub=hub,
            model_factory=lambda config: GeminiLive(config, clients),
            budgets=budgets,
        )
        try:
            yield
        finally:
            await hub.drain("server_shutdown", settings.shutdown_grace_s)
            await clients.aclose()
            await budgets.stop(settings.flush_timeout_s)
            if owns_telemetry:
                await asyncio.to_thread(tel.shutdown, settings.flush_timeout_s)
            await db.dispose()

    app = FastAPI(
        title="voicetrace",
        version="0.1.0",
        summary="Gemini Live voice service with OpenTelemetry-native voice observability",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    budgets_api.register_budget_errors(app)
    app.include_router(live_sessions.router)
    app.include_router(voice.router)
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(budgets_api.router)
    return app
