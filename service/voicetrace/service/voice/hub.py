"""The live voice sessions of this process, so shutdown and REST calls can reach them.

A plain registry: it knows bridges only through the small `LiveBridge` protocol, so it imports
nothing of the bridge (no cycle), and REST changes are dispatched by what changed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from voicetrace.service.sessions.schemas import Budgets, LiveSession
from voicetrace.service.sessions.state import SessionState, StateReason

BUDGET_EXHAUSTED = StateReason.BUDGET_EXHAUSTED


class LiveBridge(Protocol):
    """What the hub may do to a live session."""

    @property
    def session_id(self) -> str: ...

    @property
    def finished(self) -> asyncio.Event: ...

    def stop(self, reason: str) -> None: ...

    def set_paused(self, paused: bool, reason: str) -> None: ...

    def set_budgets(self, budgets: Budgets) -> None: ...


class VoiceHub:
    """The live bridges of this process, by session id."""

    def __init__(self) -> None:
        self._bridges: dict[str, LiveBridge] = {}

    def __len__(self) -> int:
        return len(self._bridges)

    def add(self, bridge: LiveBridge) -> None:
        self._bridges[bridge.session_id] = bridge

    def discard(self, bridge: LiveBridge) -> None:
        if self._bridges.get(bridge.session_id) is bridge:
            del self._bridges[bridge.session_id]

    def find(self, session_id: str) -> LiveBridge | None:
        return self._bridges.get(session_id)

    def session_changed(self, session: LiveSession) -> None:
        """REST changed a session (`api.deps.SessionListener`): apply it to its bridge."""
        bridge = self.find(session.id)
        if bridge is None:
            return
        bridge.set_budgets(session.budgets)
        if session.state == SessionState.ENDED:
            bridge.stop(session.end_reason or "ended_by_user")
        elif session.state == SessionState.PAUSED and session.state_reason != BUDGET_EXHAUSTED:
            bridge.set_paused(True, session.state_reason or "paused_by_user")
        elif (
            session.state == SessionState.LIVE
            and session.state_reason == StateReason.RESUMED_BY_USER
        ):
            bridge.set_paused(False, session.state_reason)

    async def drain(self, reason: str, timeout_s: float) -> None:
        """Ask every bridge to end with `reason` and wait (bounded) until they have."""
        bridges = list(self._bridges.values())
        for bridge in bridges:
            bridge.stop(reason)
        if bridges:
            waiters = [asyncio.ensure_future(b.finished.wait()) for b in bridges]
            _, pending = await asyncio.wait(waiters, timeout=timeout_s)
            for waiter in pending:
                waiter.cancel()
