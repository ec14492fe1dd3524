"""Resumption handles and the conversation snapshot each one restores, within fixed bounds.

Gemini issues a new handle after every turn, and any recent one resumes the conversation at that
point. Keeping every snapshot forever made a long-running emulator grow without end, so:

- per conversation (a conversation survives its reconnects) only the newest
  `per_conversation` handles stay valid — a client resumes with its *last* handle;
- per process at most `total` handles are kept; beyond that the oldest are forgotten.

A forgotten handle is refused like an unknown one (close 1008), as Gemini refuses expired ones.
A snapshot is a `Conversation`: a few integers, so the store is bounded at about
`total` × 300 bytes.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from voicetrace.emulator.usage import Context

PER_CONVERSATION = 4
TOTAL = 10_000


@dataclass
class Conversation:
    """What survives a reconnect with a resumption handle."""

    context: Context = field(default_factory=Context)
    turns: int = 0
    spoken: int = 0  # how many `Scenario.user_says` entries were consumed
    id: int = 0  # the number of the connection that started it; kept across resumptions


class ResumptionStore:
    """Handle → conversation snapshot, bounded per conversation and in total."""

    def __init__(self, per_conversation: int = PER_CONVERSATION, total: int = TOTAL) -> None:
        if per_conversation < 1 or total < 1:
            raise ValueError("resumption bounds must be at least 1")
        self.per_conversation = per_conversation
        self.total = total
        self._snapshots: OrderedDict[str, Conversation] = OrderedDict()
        self._by_conversation: dict[int, deque[str]] = {}

    def save(self, conversation: Conversation) -> str:
        """Snapshot `conversation` under a new handle and return the handle."""
        handle = f"emu-{secrets.token_urlsafe(12)}"
        self._snapshots[handle] = copy.deepcopy(conversation)
        handles = self._by_conversation.setdefault(conversation.id, deque())
        handles.append(handle)
        while len(handles) > self.per_conversation:
            self._snapshots.pop(handles.popleft(), None)
        while len(self._snapshots) > self.total:
            oldest, snapshot = self._snapshots.popitem(last=False)
            self._forget(snapshot.id, oldest)
        return handle

    def restore(self, handle: str) -> Conversation | None:
        """A copy of the conversation saved under `handle`, or None when unknown or forgotten."""
        saved = self._snapshots.get(handle)
        return None if saved is None else copy.deepcopy(saved)

    def _forget(self, conversation_id: int, handle: str) -> None:
        handles = self._by_conversation.get(conversation_id)
        if handles is None:
            return
        with contextlib.suppress(ValueError):
            handles.remove(handle)
        if not handles:
            del self._by_conversation[conversation_id]

    def __len__(self) -> int:
        return len(self._snapshots)

    def __contains__(self, handle: object) -> bool:
        return handle in self._snapshots

    @property
    def conversations(self) -> int:
        """How many conversations have at least one valid handle."""
        return len(self._by_conversation)
