"""`voicetrace emulator`: run the emulator alone until Ctrl-C or SIGTERM.

Both signals stop it the same way: open Live connections are closed (1001) and the temporary
directory with the TLS key and certificates is deleted before the process exits 0. Without the
SIGTERM handler, `docker stop` / `kill` would end the process before that cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal

from voicetrace.emulator.scenario import Scenario
from voicetrace.emulator.server import Emulator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve(
    port: int = 0,
    scenario: Scenario | None = None,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or until cancelled), after printing where the emulator is and
    how to point a client."""
    async with Emulator(scenario=scenario, host=host, port=port) as emulator:
        print(f"Gemini Live emulator listening on {emulator.base_url}")
        print(f"TLS certificate authority: {emulator.cert_path}")
        print("Point any google-genai client at it:")
        for name, value in emulator.env().items():
            print(f"  export {name}={shlex.quote(value)}")
        print("Ctrl-C to stop.", flush=True)
        await (stop or asyncio.Event()).wait()


async def _until_signalled(port: int, scenario: Scenario | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(port, scenario, stop=stop)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run_emulator_cli(port: int, scenario_path: str | None) -> None:
    """Entry point of `voicetrace emulator --port N [--scenario F]`."""
    scenario = Scenario.load(scenario_path) if scenario_path else None
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        asyncio.run(_until_signalled(port, scenario))
