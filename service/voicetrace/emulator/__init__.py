"""A faithful local Gemini Live emulator (TLS WebSocket + REST) for offline development and tests.

`async with Emulator(scenario=Scenario(user_says=["Hello"])) as emu:` starts it on a free port;
export `emu.env()` (GOOGLE_GEMINI_BASE_URL, SSL_CERT_FILE, GEMINI_API_KEY) and an unmodified
`genai.Client()` talks to it, over Live and REST.
"""

from voicetrace.emulator.cli import run_emulator_cli, serve
from voicetrace.emulator.scenario import Scenario, ScriptedTurn, UsageDelivery
from voicetrace.emulator.server import Emulator
from voicetrace.emulator.wire import WireEntry, WireLog

__all__ = [
    "Emulator",
    "Scenario",
    "ScriptedTurn",
    "UsageDelivery",
    "WireEntry",
    "WireLog",
    "run_emulator_cli",
    "serve",
]
