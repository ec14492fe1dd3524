"""`voicetrace dev`: the Gemini Live emulator and the service in one process, and a link to talk.

For a newcomer with no keys: it starts the emulator (TLS, the real Live protocol) and the service
with the demo tools, mints a login token for a per-run secret, prints the browser client's URL
with the token in the fragment (`/app#token=…`, never sent to the server by the browser), and runs
until Ctrl-C. Sessions live in a temporary SQLite file that is deleted on exit. Spans are exported
only when the standard OTEL_* / LANGFUSE_* variables say where.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr
from voicetrace.demo.tools import demo_registry
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.api.auth import mint_token
from voicetrace.service.app import create_app
from voicetrace.service.server import serve_in_background
from voicetrace.service.settings import Settings
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.setup import configure_telemetry
from voicetrace.telemetry.targets import ExportPlan, offline_defaults, plan_exports

DEV_USER = "dev-user"
TOKEN_TTL_S = 12 * 3600

# What spoken turns "say": the emulator cannot recognise speech, so its transcripts are scripted.
# The third asks for places and directions, so the model calls the demo tools.
DEV_SAYS = (
    "What's a nice thing to do this afternoon?",
    "Tell me more about the old town.",
    "Find a coffee place nearby and give me walking directions to the harbour.",
    "When does the museum open?",
)


@dataclass(frozen=True)
class DevServer:
    """Where the running dev stack is (what `voicetrace dev` prints)."""

    service_url: str
    emulator_url: str
    app_url: str  # the page, with the login token in the fragment
    user: str


def dev_scenario() -> Scenario:
    # Real-time pacing, so the model's answers take as long to arrive as to play and a user can
    # barge in on them from the page.
    return Scenario(user_says=DEV_SAYS, realtime=True)


async def run_dev(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    scenario: Scenario | None = None,
    user: str = DEV_USER,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[DevServer], None] | None = None,
) -> int:
    """Run until `stop` is set or SIGINT/SIGTERM arrives; then shut down cleanly."""
    stop = stop or asyncio.Event()
    # Checked before anything starts: a bad exporter variable is a message, not a traceback.
    env = offline_defaults(os.environ)
    plan = plan_exports(env)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        with tempfile.TemporaryDirectory(prefix="voicetrace-dev-") as tmp:
            async with Emulator(scenario=scenario or dev_scenario()) as emulator:
                # The unmodified google-genai SDK finds the emulator through its standard env vars.
                os.environ.update(emulator.env())
                settings = Settings(
                    host=host,
                    port=port,
                    sqlite_path=Path(tmp) / "dev.db",
                    database_url=None,
                    jwt_secret=SecretStr(secrets.token_hex(32)),  # per run: old links stop working
                    gemini_api_key=SecretStr(emulator.api_key),
                )
                settings.check_servable()
                telemetry = configure_telemetry(
                    service_name="voicetrace-dev",
                    pricing=PriceTable.load(settings.prices_file),
                    env=env,
                    plan=plan,
                )
                try:
                    app = create_app(
                        settings, telemetry=telemetry, tools=demo_registry(settings.tool_timeout_s)
                    )
                    async with serve_in_background(
                        app,
                        settings.host,
                        settings.port,
                        max_frame_bytes=settings.max_frame_bytes,
                        grace_s=settings.shutdown_grace_s,
                    ) as server:
                        token = mint_token(
                            user, settings.jwt_secret.get_secret_value(), ttl_s=TOKEN_TTL_S
                        )
                        info = DevServer(
                            service_url=server.base_url,
                            emulator_url=emulator.base_url,
                            app_url=f"{server.base_url}/app#token={token}",
                            user=user,
                        )
                        _print_banner(info, scenario or dev_scenario(), plan, out)
                        if on_ready is not None:
                            on_ready(info)
                        await stop.wait()
                        print("\nstopping…", file=out, flush=True)
                finally:
                    await asyncio.to_thread(telemetry.shutdown, settings.flush_timeout_s)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0


def _print_banner(info: DevServer, scenario: Scenario, plan: ExportPlan, out: TextIO) -> None:
    says = [s if isinstance(s, str) else s.says for s in scenario.user_says]
    lines = [
        f"voicetrace dev — service {info.service_url}, Gemini Live emulator {info.emulator_url}",
        "",
        f"Open this link to talk (signed in as {info.user}, valid {TOKEN_TTL_S // 3600} h):",
        f"  {info.app_url}",
        "",
        "The emulator cannot recognise speech; your spoken turns say, in order:",
        *(f"  {i}. {text}" for i, text in enumerate(says, 1)),
        f"  then {scenario.fallback_says!r}.",
        "",
        f"Telemetry: {plan.describe()}.",
        f"API docs: {info.service_url}/docs · health: {info.service_url}/health · Ctrl-C to stop.",
    ]
    print("\n".join(lines), file=out, flush=True)
