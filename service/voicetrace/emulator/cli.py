"""`voicetrace emulator`: run the emulator alone until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import shlex

from voicetrace.emulator.scenario import Scenario
from voicetrace.emulator.server import Emulator


async def serve(port: int = 0, scenario: Scenario | None = None, host: str = "127.0.0.1") -> None:
    """Serve until cancelled, after printing where the emulator is and how to point a client."""
    async with Emulator(scenario=scenario, host=host, port=port) as emulator:
        print(f"Gemini Live emulator listening on {emulator.base_url}")
        print(f"TLS certificate authority: {emulator.cert_path}")
        print("Point any google-genai client at it:")
        for name, value in emulator.env().items():
            print(f"  export {name}={shlex.quote(value)}")
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def run_emulator_cli(port: int, scenario_path: str | None) -> None:
    """Entry point of `voicetrace emulator --port N [--scenario F]`."""
    scenario = Scenario.load(scenario_path) if scenario_path else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port, scenario))
