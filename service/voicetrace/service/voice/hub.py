"""The live voice bridges of this process, so shutdown and REST calls can reach them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from voicetrace.service.sessions.state import SessionState

if TYPE_CHECKING:
    from voicetrace.service.voice.bridge import VoiceBridge


class VoiceHub:
    """The live bridges of this process, so shutdown can end each one cleanly."""

    def __init__(self) -> None:
        self._bridges: set[VoiceBridge] = set()

    def __len__(self) -> int:
        return len(self._bridges)

    def add(self, bridge: VoiceBridge) -> None:
        self._bridges.add(bridge)

    def discard(self, bridge: VoiceBridge) -> None:
        self._bridges.discard(bridge)

    def find(self, session_id: str) -> VoiceBridge | None:
        return next((b for b in self._bridges if b.session_id == session_id), None)

    def session_changed(self, session: Any) -> None:
        """REST changed a session (`service.api.deps.SessionListener`): apply it to its bridge."""
        bridge = self.find(session.id)
        if bridge is None:
            return
        bridge.set_budgets(session)
        if session.state == SessionState.ENDED:
            bridge.stop(session.end_reason or "ended_by_user")
        elif session.state == SessionState.PAUSED and session.state_reason != "budget_exhausted":
            bridge.set_paused(True, session.state_reason or "paused_by_user")
        elif session.state == SessionState.LIVE and session.state_reason == "resumed_by_user":
            bridge.set_paused(False, session.state_reason or "resumed_by_user")

    async def drain(self, reason: str, timeout_s: float) -> None:
        """Ask every bridge to end with `reason` and wait (bounded) until they have."""
        bridges = list(self._bridges)
        for bridge in bridges:
            bridge.stop(reason)
        if bridges:
            waiters = [asyncio.ensure_future(b.finished.wait()) for b in bridges]
            _, pending = await asyncio.wait(waiters, timeout=timeout_s)
            for waiter in pending:
                waiter.cancel()
