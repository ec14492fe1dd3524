"""`TurnBook`: which turn an event belongs to — the turn state machine of one session.

Plain state on the caller's thread (under the session's lock): the open turn, the cut turn
awaiting the server's `turn_complete`, the window of recent turns that late data (usage,
playback marks, transcription tails) may still reach, and the session's audio totals. Closing a
turn hands it to the `TurnOutbox`, which decides when its spans go out.
"""

from __future__ import annotations

from collections import OrderedDict

from voicetrace.telemetry import keys as k
from voicetrace.telemetry.outbox import TurnOutbox
from voicetrace.telemetry.records import TurnSummary
from voicetrace.telemetry.turns import TurnRecord

# An input transcript this soon after a turn finished is the tail of that turn, not a new one.
TRANSCRIPT_GRACE_NS = 1_500_000_000
RECENT_TURNS = 32  # turns kept for playback marks and late usage


class TurnBook:
    """Opens, cuts and closes one session's turns."""

    __slots__ = (
        "audio_in_s",
        "audio_out_ms",
        "camera_frames",
        "count",
        "cut",
        "frame_tokens",
        "idle_result_ns",
        "interruptions",
        "last_finished_ns",
        "out",
        "recent",
        "screen_frames",
        "turn",
        "unturned_frames",
    )

    def __init__(self, outbox: TurnOutbox) -> None:
        self.out = outbox
        self.turn: TurnRecord | None = None
        self.cut: TurnRecord | None = None  # cut locally, awaiting the server's turn_complete
        self.recent: OrderedDict[int, TurnRecord] = OrderedDict()
        self.count = 0
        self.interruptions = 0
        self.idle_result_ns: int | None = None  # a WHEN_IDLE tool result may make the model speak
        self.last_finished_ns = 0
        self.audio_in_s = 0.0
        self.audio_out_ms = 0.0
        self.camera_frames = 0  # the session's frames forwarded, by source
        self.screen_frames = 0
        self.frame_tokens = 0  # the prompt tokens of every frame forwarded (as the app says)
        self.unturned_frames = (0, 0)  # forwarded with no turn open: counted to the next one

    def open(self, now: int, trigger: str) -> TurnRecord:
        self.count += 1
        start = now
        if trigger == "model" and self.idle_result_ns is not None:
            start = self.idle_result_ns  # the model speaks because a WHEN_IDLE result came
        self.idle_result_ns = None
        t = TurnRecord(number=self.count, trigger=trigger, start_ns=min(start, now))
        (t.camera_frames, t.screen_frames), self.unturned_frames = self.unturned_frames, (0, 0)
        self.turn = t
        self.recent[t.number] = t
        if len(self.recent) > RECENT_TURNS:
            _, old = self.recent.popitem(last=False)
            self.out.emit_final((old,), now)  # no later data can reach it any more
        return t

    def user_turn(self, now: int, trigger: str) -> TurnRecord:
        """The turn user activity belongs to; activity while the model responds is a barge-in:
        the user talks over the model, so that turn is cut and the next one opens."""
        t = self.turn
        if t is None:
            return self.open(now, trigger)
        if not t.responding:
            return t
        t.cut_ns = now
        t.add_event(k.EV_BARGE_IN, {}, now)
        if not t.generation_complete:
            t.interrupted, t.end_reason = True, "interrupted"
        if self.cut is not None:  # the server never completed the previous cut turn
            self.finish(self.cut, now, None)
        self.cut, self.turn = t, None
        return self.open(now, trigger)

    def frame(self, source: str, tokens: int) -> None:
        """One camera or screen frame forwarded to the model (it opens no turn), costing
        `tokens` prompt tokens in every later turn (it joins the context)."""
        t = self.cut or self.turn
        camera = source == "camera"
        if camera:
            self.camera_frames += 1
        elif source == "screen":
            self.screen_frames += 1
        else:
            raise ValueError(f"frame source must be 'camera' or 'screen', not {source!r}")
        self.frame_tokens += max(int(tokens), 0)
        if t is not None:
            if camera:
                t.camera_frames += 1
            else:
                t.screen_frames += 1
        else:
            cam, scr = self.unturned_frames
            self.unturned_frames = (cam + 1, scr) if camera else (cam, scr + 1)

    def transcript_turn(self, now: int) -> TurnRecord:
        """Input transcription lags the audio: shortly after a turn finished, it is its tail."""
        if self.turn is not None:
            return self.turn
        last = next(reversed(self.recent.values()), None)
        recent = now - self.last_finished_ns < TRANSCRIPT_GRACE_NS
        if self.cut is None and last is not None and recent and not last.chat_emitted:
            return last
        return self.user_turn(now, "transcript")

    def usage_target(self) -> TurnRecord | None:
        """The turn a usage snapshot belongs to: the one responding, else the latest finished
        turn whose generation still waits for usage."""
        if self.cut is not None:
            return self.cut
        if self.turn is not None and self.turn.responding:
            return self.turn
        for t in reversed(self.recent.values()):
            if t.state != "open" and not t.chat_emitted and t.usage is None:
                return t
            if t.state != "open":
                break
        return self.turn

    def see_frames(self, t: TurnRecord) -> None:
        """The frames in the context now: what the turn's usage re-bills (telemetry.frames)."""
        t.frames_seen = (self.camera_frames, self.screen_frames)
        t.frame_tokens_seen = self.frame_tokens

    def finish(self, t: TurnRecord, now: int, reason: str | None) -> TurnSummary:
        """Close a turn: fix its end reason and numbers; the outbox emits or waits for usage."""
        if t.usage is None:
            # As if its usage came now: an estimate (outbox) bills and splits these frames;
            # usage that still comes sets them again.
            self.see_frames(t)
        if t is self.turn:
            self.turn = None
        if t is self.cut:
            self.cut = None
        if reason is not None:
            t.end_reason = reason
        elif t.end_reason is None:
            failed = any(tool.status == "error" for tool in t.tools)
            t.end_reason = "tool_error" if failed else "completed"
        t.close_ns = now
        t.state = "finished"
        self.last_finished_ns = now
        if t.interrupted:
            self.interruptions += 1
        return self.out.close(t, now, self.audio_in_s, self.audio_out_ms)
