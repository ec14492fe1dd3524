"""What the user says: typed client content, realtime audio (VAD or manual activity), text.

Each becomes a user turn for the model; speech that starts while the model talks is a barge-in.
"""

from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket
from voicetrace.emulator.generation import TurnEngine
from voicetrace.emulator.protocol import CloseError, b64decode_any, has, pick
from voicetrace.emulator.state import EmulatorState
from voicetrace.emulator.usage import frame_tokens, text_tokens
from voicetrace.emulator.vad import Endpointer

# Per-session bound on typed text kept for the assistant until turnComplete (tokens are counted
# in full regardless): a client that never completes a turn cannot grow the emulator.
MAX_PENDING_CHARS = 64 * 1024
IMAGE_MIME_TYPES = ("image/jpeg", "image/png")


def _newest(texts: list[str], limit: int) -> list[str]:
    """The newest texts whose total length fits in `limit` (the newest one cut if alone)."""
    kept: list[str] = []
    size = 0
    for text in reversed(texts):
        if size + len(text) > limit:
            if not kept:
                kept.append(text[-limit:])
            break
        kept.append(text)
        size += len(text)
    return kept[::-1]


class UserInput(TurnEngine):
    def __init__(self, ws: WebSocket, state: EmulatorState, version: str, method: str) -> None:
        super().__init__(ws, state, version, method)
        self.vad: Endpointer | None = None  # set by the setup (automatic activity detection)
        self._billed_samples = 0  # input samples already billed to a turn
        self._activity_samples: int | None = None  # manual activity: samples since activityStart
        self._pending_user: list[str] = []  # user texts since the last model turn, not answered
        self.frames_received = 0  # realtime video frames of this connection

    async def _client_content(self, content: dict[str, Any]) -> None:
        turns = pick(content, "turns") or []
        if not isinstance(turns, list):
            raise CloseError(1007, "Invalid argument: client_content.turns must be a list.")
        await self._interrupt()  # new client content always stops the model
        for turn in turns:
            texts = [str(pick(p, "text")) for p in pick(turn, "parts") or [] if has(p, "text")]
            self._pending_text += sum(text_tokens(t) for t in texts)
            if (pick(turn, "role") or "user") == "user":
                self._pending_user.extend(texts)
            else:  # a model turn of the history: what the user said before it is answered
                self._pending_user.clear()
        self._pending_user = _newest(self._pending_user, MAX_PENDING_CHARS)
        # As Gemini does, content without turnComplete only accumulates: frameworks (Pipecat,
        # LiveKit) send the user's text with turn_complete=false, then a bare turn_complete=true.
        if pick(content, "turnComplete", False):
            said, self._pending_user = " ".join(self._pending_user), []
            self._start_user_turn(said, spoken=False)

    async def _realtime_input(self, realtime: dict[str, Any]) -> None:
        assert self.setup is not None and self.vad is not None
        # (blob, sent as `video`): the deprecated `mediaChunks` carry audio or images by mime type.
        chunks = [(c, False) for c in pick(realtime, "mediaChunks") or []]
        if has(realtime, "audio"):
            chunks.append((pick(realtime, "audio"), False))
        if has(realtime, "video"):
            chunks.append((pick(realtime, "video"), True))
        for chunk, video in chunks:
            mime = str(pick(chunk, "mimeType") or ("image/jpeg" if video else "audio/pcm"))
            try:
                data = b64decode_any(pick(chunk, "data") or "")
            except ValueError as exc:
                raise CloseError(1007, f"Invalid argument: {exc}") from None
            if mime.startswith("audio/") and not video:
                await self._audio(data)
            elif mime in IMAGE_MIME_TYPES:
                self._frame(data)
            else:
                raise CloseError(1007, f"Invalid argument: unsupported mime type {mime[:40]!r}.")
        manual = self.setup.manual_activity
        if has(realtime, "activityStart") or has(realtime, "activityEnd"):
            if not manual:
                raise CloseError(
                    1007,
                    "Invalid argument: explicit activity control is not supported when "
                    "automatic activity detection is enabled.",
                )
            if has(realtime, "activityStart"):
                await self._interrupt()
                self._activity_samples = 0
            if has(realtime, "activityEnd") and self._activity_samples is not None:
                samples, self._activity_samples = self._activity_samples, None
                self._start_spoken_turn(samples)
        if pick(realtime, "audioStreamEnd", False) and not manual and self.vad.in_speech:
            self.vad.reset_speech()
            self._start_spoken_turn(self._take_samples(self.vad.received))
        text = pick(realtime, "text")
        if isinstance(text, str) and not text.strip() and self._answering():
            # Pipecat's Gemini 3.x nudge: `text=" "` right after client_content(turnComplete),
            # so that the model answers; it already is, and a blank adds nothing to the turn.
            return
        if isinstance(text, str) and text:
            await self._interrupt()
            self._pending_text += text_tokens(text)
            said, self._pending_user = " ".join([*self._pending_user, text]), []
            self._start_user_turn(said, spoken=False)

    def _answering(self) -> bool:
        return self.generation is not None and not self.generation.done()

    def _frame(self, image: bytes) -> None:
        """A camera/screen frame: billed at the setup's media resolution, into the context at
        once (not analysed: the assistant's answers do not depend on what it shows)."""
        assert self.setup is not None
        if not image:
            raise CloseError(1007, "Invalid argument: empty video frame.")
        self.conv.context.image += frame_tokens(self.setup.model, self.setup.media_resolution)
        self.frames_received += 1

    async def _audio(self, pcm: bytes) -> None:
        assert self.setup is not None and self.vad is not None
        if self.setup.manual_activity:
            if self._activity_samples is not None:  # audio outside an activity is ignored
                self._activity_samples += len(pcm) // 2
            return
        for boundary in self.vad.feed(pcm):
            if boundary.event == "speech_start":
                await self._interrupt()  # barge-in: the user talks over the model
            else:
                self._start_spoken_turn(self._take_samples(boundary.sample))

    def _take_samples(self, upto: int) -> int:
        samples = max(0, upto - self._billed_samples)
        self._billed_samples = max(self._billed_samples, upto)
        return samples
