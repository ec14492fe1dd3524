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
from voicetrace.service.api import health, live_direct, live_sessions, observability, voice
from voicetrace.service.api.errors import register_error_handlers
from voicetrace.service.api.limits import install_request_limits
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.store import LostTrace, SessionStore
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget_policy import BudgetPolicy
from voicetrace.service.voice.deps import BridgeDeps
from voicetrace.service.voice.gemini import GeminiClients, GeminiLive
from voicetrace.service.voice.hub import VoiceHub
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.service.web import routes as web
from voicetrace.telemetry import PriceTable, SessionInfo, VoiceTelemetry
from voicetrace.telemetry.setup import configure_telemetry

log = logging.getLogger(__name__)


def close_lost_trace(telemetry: VoiceTelemetry, settings: Settings, lost: LostTrace) -> None:
    """A session whose process died was ended (here at startup, or by a replica's sweeper):
    export the root span it never got, with the totals of its recorded turns."""
    info = SessionInfo(
        session_id=lost.session_id,
        user_id=lost.user_id,
        model=settings.model,
        agent_name=settings.agent_name,
        tags=(f"mode:{lost.mode}",) if lost.mode else (),
        environment=settings.environment,
    )
    telemetry.close_lost_session(info, lost.root, lost.summary)


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
        owns_telemetry = telemetry is None
        tel = telemetry or configure_telemetry(
            service_name="voicetrace",
            pricing=PriceTable.load(settings.prices_file),
            usage_wait_s=settings.usage_wait_s,
            langfuse_scores=settings.langfuse_scores,
            langfuse_media=settings.langfuse_media,
        )
        tel.prepare_model(settings.model)  # counters exist before the first session
        store = SessionStore(
            db,
            policy=SessionPolicy.from_settings(settings),
            on_lost_trace=lambda lost: close_lost_trace(tel, settings, lost),
        )
        recovered = await store.recover_after_crash()
        if recovered:
            log.warning("closed %d session(s) left open by a previous run", recovered)
        leases = store.start_lease_keeper()  # heartbeat + sweep (docs/reliability.md)
        budgets = await BudgetPolicy.start(db, settings, tel.pricing)  # usage ledger, daily
        app.state.budgets = budgets
        hub = VoiceHub()
        key = settings.gemini_api_key
        clients = GeminiClients(
            key.get_secret_value() if key else None, compression=settings.model_ws_compression
        )
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
        direct = live_direct.DirectSessions(
            settings, store, tel, app.state.bridge_deps.tools, settings.direct_orphan_timeout_s
        )
        app.state.direct_sessions = direct
        direct.start()
        try:
            yield
        finally:
            await direct.close("server_shutdown")
            await hub.drain("server_shutdown", settings.shutdown_grace_s)
            await clients.aclose()
            await leases.stop()
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
    install_request_limits(app, settings)  # 413/408 before any parsing (docs/reliability.md)
    budgets_api.register_budget_errors(app)
    app.include_router(live_sessions.router)
    app.include_router(voice.router)
    app.include_router(live_direct.router)
    app.include_router(health.router)
    app.include_router(web.router)  # the browser client at /app
    app.include_router(observability.router)
    app.include_router(budgets_api.router)
    return app
