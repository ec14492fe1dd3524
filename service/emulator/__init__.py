"""A faithful local Gemini Live emulator (TLS WebSocket + REST) for offline development and tests.

    async with Emulator(scenario=Scenario(user_says=["Hello"])) as emu:
        os.environ.update(emu.env())   # GOOGLE_GEMINI_BASE_URL, SSL_CERT_FILE, GEMINI_API_KEY
        client = genai.Client()        # the unmodified SDK now talks to the emulator
"""

from service.emulator.cli import run_emulator_cli, serve
from service.emulator.scenario import Scenario, ScriptedTurn
from service.emulator.server import Emulator
from service.emulator.wire import WireEntry, WireLog

__all__ = [
    "Emulator",
    "Scenario",
    "ScriptedTurn",
    "WireEntry",
    "WireLog",
    "run_emulator_cli",
    "serve",
]
