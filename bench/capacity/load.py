"""The load generator: worker processes of real-time microphones over the voicetrace protocol.

Each worker process runs its share of the sessions in one asyncio loop. A session connects
(`POST /live-sessions` + the WebSocket with the bearer subprotocol, as docs/protocol.md says; the
bare relay needs only the socket), reports ready, waits for "go", then keeps an open microphone:
one `frame_ms` PCM16 frame every `frame_ms` against an absolute clock, room noise between turns,
speech bursts (speech_like + room noise) for the turns. `SILENCE_MS` after a burst the frame gets
the END_OF_SPEECH flag — where Gemini's server VAD would end the turn — and the fake upstream
answers. After `turn_complete` and `gap_s`, the user speaks again, until `seconds` are up.

Every frame carries its send time (capacity/tags.py); every frame of model audio carries the
upstream's, which the reader turns into upstream→client latency. How late each frame left
against its slot is recorded: a generator that cannot keep its pace invalidates the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import websockets
from voicetrace.service.api.auth import mint_token
from voicetrace.service.voice.audio import frames, mix, room_noise, speech_like
from voicetrace.service.voice.protocol import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL

from capacity import tags
from capacity.procs import claim

SILENCE_MS = 300  # voicetrace's default silence_duration_ms: Gemini's VAD would end the turn here


@dataclass(frozen=True)
class Plan:
    """What every client does; pickled to the worker processes."""

    base_url: str
    secret: str | None  # None: the bare relay (no sessions API, no auth)
    seconds: float
    frame_ms: int = 20
    speech_s: float = 1.2
    gap_s: float = 0.6
    turn_timeout_s: float = 10.0
    late_ms: float = 20.0
    stall_ms: float = 0.0  # fault injection: block the worker's loop this long every second
    deflate: bool = True  # offer permessage-deflate, as browsers do


@dataclass
class Result:
    """One worker's outcome; sent to the parent."""

    sessions: int = 0
    connected: int = 0
    turns_ok: int = 0
    turns_failed: int = 0
    errors: list[str] = field(default_factory=list)
    frames: int = 0
    late_frames: int = 0
    max_late_ms: float = 0.0
    down_ms: list[float] = field(default_factory=list)


class Client:
    """One session: socket, reader, microphone, turn loop."""

    def __init__(self, plan: Plan, url: str, token: str | None, audio: Audio, out: Result) -> None:
        self.plan, self.url, self.token, self.audio, self.out = plan, url, token, audio, out
        self.ws: websockets.ClientConnection | None = None
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.completed: dict[int, asyncio.Future[str]] = {}
        self.queue: deque[tuple[bytes, int]] = deque()
        self.outbox: deque[str] = deque()
        self.turn = 0
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        protocols = [SUBPROTOCOL] + ([BEARER_SUBPROTOCOL_PREFIX + self.token] if self.token else [])
        self.ws = await websockets.connect(
            self.url,
            subprotocols=protocols,
            open_timeout=20,
            compression="deflate" if self.plan.deflate else None,
            max_size=None,  # type: ignore[list-item]
        )
        self.reader = asyncio.create_task(self.read())
        await asyncio.wait_for(self.started.wait(), 20)

    async def read(self) -> None:
        assert self.ws is not None
        out = self.out
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    sent, _ = tags.read(frame)
                    out.down_ms.append(1000 * (time.monotonic() - sent))
                    continue
                m = json.loads(frame)
                kind = m.get("type")
                if kind == "session_started":
                    self.started.set()
                elif kind == "response_started":
                    self.outbox.append(_playback("started", m["turn"]))
                elif kind == "turn_complete":
                    n = m["number"]
                    self.outbox.append(_playback("stopped", n))
                    future = self.completed.get(n)
                    if future is not None and not future.done():
                        future.set_result(m.get("end_reason", "?"))
                elif kind == "error":
                    out.errors.append(f"error frame {m.get('code')}")
                elif kind == "session_ended":
                    self.ended.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.ended.set()
            for future in self.completed.values():
                if not future.done():
                    future.set_result("connection closed")

    async def mic(self, start: float) -> None:
        """Frames at `start + k * frame` until cancelled; never awaits anything but sends."""
        assert self.ws is not None
        plan, out, noise = self.plan, self.out, self.audio.noise
        frame_s, k = plan.frame_ms / 1000, 0
        while True:
            delay = start + k * frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = -1000 * delay
            if late > plan.late_ms:
                out.late_frames += 1
            out.max_late_ms = max(out.max_late_ms, late)
            while self.outbox:
                await self.ws.send(self.outbox.popleft())
            frame, flag = self.queue.popleft() if self.queue else (noise[k % len(noise)], 0)
            await self.ws.send(tags.tagged(frame, time.monotonic(), flag))
            out.frames += 1
            k += 1

    async def converse(self, start: float, until: float) -> None:
        """Turns until the deadline; a turn not complete in time is a failure."""
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        mic = asyncio.create_task(self.mic(start))
        try:
            while time.monotonic() + self.plan.speech_s + 3 < until:
                self.turn += 1
                future = self.completed[self.turn] = asyncio.get_running_loop().create_future()
                self.queue.extend(self.audio.utterance)
                try:
                    reason = await asyncio.wait_for(future, self.plan.turn_timeout_s)
                except TimeoutError:
                    reason = "timeout"
                if reason == "completed":
                    self.out.turns_ok += 1
                else:
                    self.out.turns_failed += 1
                    self.out.errors.append(f"turn {self.turn}: {reason}")
                    return
                await asyncio.sleep(self.plan.gap_s)
        finally:
            mic.cancel()
            with contextlib.suppress(BaseException):
                await mic

    async def close(self) -> None:
        if self.ws is None:
            return
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps({"type": "end"}))
            await asyncio.wait_for(self.ended.wait(), 10)
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


@dataclass(frozen=True)
class Audio:
    """Precomputed microphone audio (the tags are stamped per frame at send time)."""

    noise: list[bytes]
    utterance: list[tuple[bytes, int]]  # speech frames, then silence up to the flagged frame

    @classmethod
    def make(cls, frame_ms: int, speech_s: float, seed: int) -> Audio:
        noise = frames(room_noise(4.0, seed=seed), frame_ms)
        speech = frames(mix(speech_like(speech_s), room_noise(speech_s, seed=seed + 1)), frame_ms)
        quiet = [(noise[i % len(noise)], 0) for i in range(SILENCE_MS // frame_ms)]
        quiet[-1] = (quiet[-1][0], tags.END_OF_SPEECH)
        return cls(noise, [(f, 0) for f in speech] + quiet)


def _playback(event: str, turn: int) -> str:
    return json.dumps({"type": "playback", "event": event, "turn": turn, "played_ms": 0.0})


def _create_session(base_url: str, token: str) -> str:
    request = urllib.request.Request(
        f"{base_url}/live-sessions",
        data=b'{"mode": "bench"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["id"]


async def _stall(ms: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        time.sleep(ms / 1000)  # noqa: ASYNC251 - blocks the loop on purpose: a generator behind


async def _run(plan: Plan, users: list[str], conn: Connection) -> Result:
    out = Result(sessions=len(users))
    ws_base = plan.base_url.replace("http", "ws", 1)
    clients: list[Client] = []
    for i, user in enumerate(users):
        token = mint_token(user, plan.secret) if plan.secret else None
        try:
            sid = await asyncio.to_thread(_create_session, plan.base_url, token) if token else user
        except OSError as exc:
            out.errors.append(f"POST /live-sessions: {exc}"[:120])
            continue
        audio = Audio.make(plan.frame_ms, plan.speech_s, seed=hash(user) % 1000 + i)
        clients.append(Client(plan, f"{ws_base}/v1/voice/{sid}", token, audio, out))
    results = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            out.errors.append(f"connect: {type(r).__name__}: {r}"[:120])
    live = [c for c, r in zip(clients, results, strict=True) if not isinstance(r, BaseException)]
    out.connected = len(live)
    conn.send("ready")
    t0, offsets = await asyncio.to_thread(conn.recv)
    stall = asyncio.create_task(_stall(plan.stall_ms)) if plan.stall_ms else None
    until = t0 + plan.seconds
    await asyncio.gather(*(c.converse(t0 + offsets[i], until) for i, c in enumerate(live)))
    if stall is not None:
        stall.cancel()
    await asyncio.gather(*(c.close() for c in live))
    return out


def worker(
    conn: Connection, plan: Plan, users: list[str], cpus: set[int] | None, nice: int
) -> None:
    """Entry point of a generator process: connect, say "ready", wait for (t0, offsets), run."""
    claim(cpus, nice)
    try:
        conn.send(asyncio.run(_run(plan, users, conn)))
    except Exception as exc:  # reported to the parent, which marks the run invalid
        conn.send(
            Result(sessions=len(users), errors=[f"worker crashed: {type(exc).__name__}: {exc}"])
        )
    finally:
        conn.close()
