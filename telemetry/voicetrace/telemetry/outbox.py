"""`TurnOutbox`: when each part of a finished turn goes to the emitter, exactly once.

Runs on the caller's thread under the session's lock, and only decides: the turn span once
the turn is finished and its usage is there (or `usage_wait_s` passed); the generation once
usage is there, or when waiting is over; each tool once it has a result (or is abandoned at
the end). The work itself — spans, metrics — is one `SessionWriter.emit` job per decision on
the emitter thread. The session's billed totals (tokens, exact Decimal cost) are kept here,
as cheap sums, because `end()` must return them at once.

A generation that goes out for good without usage (nothing came within the wait, nor while it
was deferred) is estimated here (`estimates.estimate_usage`), from what was streamed and the
context carried into the turn: the last reported context plus the estimates since, and the
frames forwarded since that context was billed (they joined it as they arrived). The
estimate is final, like reported usage: the span, the settled summary, budgets and the ledger
all get it, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from voicetrace.telemetry.estimates import context_after, estimate_usage
from voicetrace.telemetry.prices import Cost, PriceTable
from voicetrace.telemetry.records import TurnSummary
from voicetrace.telemetry.turns import ToolRecord, TurnRecord
from voicetrace.telemetry.usage import UsageBreakdown
from voicetrace.telemetry.writer import SessionWriter

_DEFERRED_CHATS = 4  # finished turns whose generation may still wait for usage
# Settled turns whose carried context is kept, for a deferred turn that settles after later
# ones: more than the session's window of recent turns (a turn leaving it settles at once).
_CONTEXTS = 64


class TurnOutbox:
    """One session's emission decisions and billed totals (caller side, under its lock)."""

    def __init__(
        self,
        writer: SessionWriter,
        submit: Callable[..., bool],
        schedule: Callable[[int], None],
        prices: PriceTable | None,
        model: str,
        usage_wait_ns: int,
        settled: Callable[[TurnSummary], None],
        context_tokens: int = 0,
    ) -> None:
        self._w, self._submit, self._schedule = writer, submit, schedule
        self._settled = settled
        self._prices, self._model, self._wait_ns = prices, model, usage_wait_ns
        self._waiting: list[TurnRecord] = []  # finished, generation not handed over yet
        self._billed: list[tuple[UsageBreakdown, Cost | None]] = []
        self.image_totals = (0, 0)  # billed image tokens by source (camera, screen)
        self._cost_cache: tuple[Any, Cost | None] | None = None
        self._reported_audio = (0.0, 0.0)
        self._newest_closed = 0  # the latest turn number that finished
        # Turn number → the context the next turn carries, for the latest settled turns (a
        # deferred turn may settle after later ones; it is estimated from those before it).
        # With it, the frame tokens the session had seen at that turn's usage: frames forwarded
        # since are in the next turn's context too.
        self._contexts: dict[int, tuple[dict[str, int], int]] = {
            0: ({"text": max(context_tokens, 0)}, 0)
        }

    # -- decisions --------------------------------------------------------------------------------
    def close(self, t: TurnRecord, now: int, audio_in_s: float, audio_out_ms: float) -> TurnSummary:
        """A turn just finished: its summary now; its spans now or once usage is in."""
        self._newest_closed = max(self._newest_closed, t.number)
        cost = self.cost_of(t)
        t.summary = summary = t.make_summary(cost.total if cost is not None else None)
        d_in, d_out = self._audio_delta(audio_in_s, audio_out_ms)
        self._submit(self._w.turn_closed, summary, d_in, d_out)
        if t.usage is not None and not t.awaiting_playback:
            self.emit(t, now)
        else:
            self._waiting.append(t)
            t.deadline_ns = now + self._wait_ns
            self._schedule(t.deadline_ns)
        return summary

    def usage_arrived(self, t: TurnRecord, now: int) -> None:
        """New usage (or the heard audio) for a turn that already finished (it may already
        have gone out)."""
        if t.state in ("finished", "emitted"):
            self.emit(t, now)

    def tool_done(self, rec: ToolRecord, now: int) -> None:
        if rec.turn.state == "emitted":
            self.emit(rec.turn, now)  # a non-blocking result after its turn went out

    def flush_due(self, now: int) -> None:
        """Emit finished turns whose usage wait is over. Stop waiting for a generation whose
        usage can no longer come — a later turn finished, so a snapshot now belongs to that one
        (`TurnBook.usage_target`) — and for the oldest beyond `_DEFERRED_CHATS`."""
        if not self._waiting:
            return
        for t in list(self._waiting):
            if t.state == "finished" and now >= t.deadline_ns:
                self.emit(t, now)
        deferred = [t for t in self._waiting if t.state == "emitted"]
        overflow = len(deferred) - _DEFERRED_CHATS
        for i, t in enumerate(deferred):
            if i < overflow or t.number < self._newest_closed:
                self.emit(t, now, final=True)

    def emit_final(self, turns: Iterable[TurnRecord], now: int) -> None:
        """The session ends (or the turns leave the recent window): everything goes out."""
        for t in turns:
            if t.state != "open":
                self.emit(t, now, final=True)

    def emit(self, t: TurnRecord, now: int, final: bool = False) -> None:
        """Hand over what is due for `t` as one emitter job."""
        turn = t.state == "finished"
        if turn:
            t.state = "emitted"
        tools = []
        for tool in t.tools:
            if tool.emitted or not (tool.done or final):
                continue
            if not tool.done:
                tool.status, tool.end_ns = "abandoned", now
            tool.emitted = True
            tools.append((tool, tool.end_ns or now))
        chat = None
        # With usage in, a cut turn still waits (until its deadline) for what was heard.
        patient = t.awaiting_playback and now < t.deadline_ns and not final
        if not t.chat_emitted and ((t.usage is not None and not patient) or final):
            # The turn's usage is settled: final now, whatever comes later is ignored.
            t.chat_emitted = True
            self._forget(t)
            if t.usage is None and t.response_start_ns is not None:
                # Gemini reported nothing and nothing more will be waited for: estimate.
                context, seen = self._context_before(t)
                new_frames = t.frame_tokens_seen - seen
                t.usage, t.usage_estimated = estimate_usage(t, context, new_frames), True
            usage, cost = t.breakdown(), self.cost_of(t)
            if usage is not None:
                self._carry(t.number, (context_after(usage), t.frame_tokens_seen))
            if t.usage is not None or t.response_start_ns is not None:
                chat = (usage, cost, t.usage_late)
                if usage is not None:
                    self._billed.append((usage, cost))
                    camera, screen = t.image_split()
                    total_camera, total_screen = self.image_totals
                    self.image_totals = (total_camera + camera, total_screen + screen)
            # else: nothing generated and nothing billed: no generation
            self._settled(t.make_summary(cost.total if cost is not None else None))
        if turn or tools or chat is not None:
            self._submit(self._w.emit, t, turn, tuple(tools), chat)

    # -- numbers --------------------------------------------------------------------------------
    def cost_of(self, t: TurnRecord) -> Cost | None:
        """Cost of the turn's (last) usage, computed once per snapshot."""
        usage = t.breakdown()
        if usage is None or self._prices is None:
            return None
        if self._cost_cache is None or self._cost_cache[0] is not usage:
            self._cost_cache = (usage, self._prices.cost(self._model, usage))
        return self._cost_cache[1]

    def totals(self) -> tuple[int, int, dict[str, int], Decimal | None]:
        """(input tokens, output tokens, tokens by modality, cost) billed so far."""
        tokens_in = tokens_out = 0
        by_modality: dict[str, int] = {}
        cost: Decimal | None = None
        for usage, c in self._billed:
            tokens_in += usage.input_tokens
            tokens_out += usage.output_tokens
            for key, n in usage.by_modality().items():
                by_modality[key] = by_modality.get(key, 0) + n
            if c is not None:
                cost = (cost or Decimal(0)) + c.total
        return tokens_in, tokens_out, by_modality, cost

    def report_audio(self, audio_in_s: float, audio_out_ms: float) -> None:
        """Audio not yet reported to the metrics (silence after the last turn bills too)."""
        d_in, d_out = self._audio_delta(audio_in_s, audio_out_ms)
        if d_in > 0 or d_out > 0:
            self._submit(self._w.metrics.audio, d_in, d_out)

    def _audio_delta(self, audio_in_s: float, audio_out_ms: float) -> tuple[float, float]:
        audio_out_s = audio_out_ms / 1000.0
        last_in, last_out = self._reported_audio
        self._reported_audio = (max(audio_in_s, last_in), max(audio_out_s, last_out))
        return max(audio_in_s - last_in, 0.0), max(audio_out_s - last_out, 0.0)

    def _context_before(self, t: TurnRecord) -> tuple[dict[str, int], int]:
        """The context carried into `t` and the frame tokens seen then: that after the latest
        settled turn before it (if that was forgotten, the oldest known: an over- rather than an
        under-estimate)."""
        before = [n for n in self._contexts if n < t.number]
        return self._contexts[max(before) if before else min(self._contexts)]

    def _carry(self, number: int, context: tuple[dict[str, int], int]) -> None:
        self._contexts[number] = context
        if len(self._contexts) > _CONTEXTS:
            del self._contexts[min(self._contexts)]

    def _forget(self, t: TurnRecord) -> None:
        # By identity: records compare by value, and a turn may never have waited at all.
        for i, waiting in enumerate(self._waiting):
            if waiting is t:
                del self._waiting[i]
                return
