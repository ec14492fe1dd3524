"""How many concurrent voice sessions one service process carries: latency, CPU, memory, errors.

    python bench/concurrent_sessions.py [--sessions 10,50,100,150,200] [--otlp-at 100] [--no-pin]

Three kinds of process, so that only the service's own work counts against the service:
  emulator  `voicetrace emulator` (a subprocess): Gemini Live over TLS, answers paced at real time
  service   `voicetrace serve` (a subprocess configured by env vars; a fresh one and a fresh SQLite
            file per level)
  clients   `--client-procs` worker processes, each running its share of the sessions in asyncio
With two or more CPUs the service is pinned to CPU 0 and everything else to the other CPUs, so its
figures are those of one process on one core, not disturbed by the load generator.

A session: `POST /live-sessions`, the WebSocket, then an open microphone that sends 20 ms
(`--frame-ms`) PCM16 frames at real time until the end (silence between turns). Each of `--turns`
turns is `--speech-s` of speech; the emulator's server VAD ends it after 300 ms of silence, the
model answers about 2 s of audio, the user waits `--gap-s` and speaks again. Sessions start
staggered over `--ramp-s`.

Per turn, as the client sees it: **latency = first audio byte of the answer − send time of the
frame that completed the 300 ms of trailing silence** (the endpointing frame): the service both
ways, the emulator's VAD and first chunk, none of the speech or of the silence window. `srv TTFA`
is the service's own `ttfa_ms` from `turn_complete`, for comparison. CPU% is the service process's
utime+stime from /proc/<pid>/stat over the window in which every session was connected (100 % =
one core); RSS is VmRSS before the clients and its peak. `mic lag` is how late the client processes
sent their frames (p99). A row marked ⚠ had the load generator's CPUs (or, unpinned, the whole
machine) over 90 % busy or its clients late: its latency is not the service's alone.
Telemetry is on in every run (spans built, exporter `none`); `--otlp-at N` repeats one level with
OTLP/HTTP export of traces and metrics to a local counting sink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import websockets
from voicetrace.emulator.vad import Endpointer
from voicetrace.service.api.auth import mint_token
from voicetrace.service.voice.audio import frames, silence, speech_like
from voicetrace.service.voice.protocol import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL

# /health counters that mean the telemetry lost or failed something (shown when non-zero).
TELEMETRY_ISSUES = (
    "spans_dropped",
    "export_failures",
    "tracer_errors",
    "emit_dropped",
    "usage_late",
    "last_error",
)
LATE_MS = 100  # mic lag p99 above this: the clients/emulator, not the service, set the pace
SILENCE_MS = 300  # the service's default `silence_duration_ms`, which the emulator's VAD applies
REPLY = "Sure, that sounds like a lovely plan."  # ~2.2 s of paced model audio (60 ms a char)
TICK_S = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the client side (runs in the worker processes) ----------------------------------------------


@dataclass
class Plan:
    """What every client does; pickled to the worker processes."""

    base_url: str
    secret: str
    turns: int
    speech_s: float
    gap_s: float
    ramp_s: float
    frame_ms: int = 20
    turn_timeout_s: float = 15.0


@dataclass
class Session:
    """One client's view of its session while it runs."""

    turn: int = 0  # the turn whose audio is arriving (from `response_started`)
    first_audio: dict[int, float] = field(default_factory=dict)
    audio_bytes: dict[int, int] = field(default_factory=dict)
    completed: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    closed: str | None = None  # "code reason" once the service closed the socket
    outbox: deque[str] = field(default_factory=deque)  # control messages the mic sends next
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `done()`; TimeoutError or ConnectionError naming `what` otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not done() and self.closed is None:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise TimeoutError(what) from None
        if not done():
            raise ConnectionError(f"closed {self.closed} before {what}")


class Mic:
    """An open microphone: one frame every `frame_s` against an absolute clock, speech when
    queued, silence otherwise. `speak()` returns a future of the send time of the frame on which
    the emulator's VAD ends the utterance; `lags` gets how late each frame went out."""

    def __init__(
        self, ws: Any, frame_s: float, silence_frame: bytes, lags: list[float], outbox: deque[str]
    ) -> None:
        self.ws, self.frame_s, self.silence_frame, self.lags = ws, frame_s, silence_frame, lags
        self.outbox = outbox
        self.queue: deque[bytes] = deque()
        self._endpoint: asyncio.Future[float] | None = None
        self._countdown = -1  # frames to send until the endpointing frame went out

    def speak(self, speech: Sequence[bytes], endpoint_frame: int) -> asyncio.Future[float]:
        """Queue an utterance; `endpoint_frame` counts from its first frame (see endpoint_frame)."""
        self.queue.extend(speech)
        self._endpoint = asyncio.get_running_loop().create_future()
        self._countdown = endpoint_frame
        return self._endpoint

    async def run(self) -> None:
        start, k = time.monotonic(), 0
        while True:
            delay = start + k * self.frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lags.append(max(0.0, -delay))
            while self.outbox:
                await self.ws.send(self.outbox.popleft())
            await self.ws.send(self.queue.popleft() if self.queue else self.silence_frame)
            if self._countdown == 0 and self._endpoint is not None:
                self._endpoint.set_result(time.monotonic())
            self._countdown -= 1
            k += 1


def endpoint_frame(speech: Sequence[bytes], silence_frame: bytes) -> int:
    """Index (from the first speech frame) of the frame that completes the emulator's silence
    window: its own VAD run offline, since the fading end of speech already counts as silence."""
    vad = Endpointer(SILENCE_MS)
    for i in range(len(speech) + 10 * SILENCE_MS):
        frame = speech[i] if i < len(speech) else silence_frame
        if any(b.event == "speech_end" for b in vad.feed(frame)):
            return i
    raise ValueError("the speech never ends for the VAD")


async def _read(ws: Any, s: Session) -> None:
    try:
        await _read_frames(ws, s)
    finally:
        s.closed = f"{ws.close_code} {ws.close_reason or ''}".strip()
        s.changed.set()


def _playback(event: str, turn: int, played_ms: float) -> str:
    return json.dumps(
        {"type": "playback", "event": event, "turn": turn, "played_ms": round(played_ms, 1)}
    )


async def _read_frames(ws: Any, s: Session) -> None:
    # Never await a send here: a reader that blocks on its own writes can close a cycle of
    # full buffers through the service and the emulator. Replies go out with the mic's frames.
    async for frame in ws:
        now = time.monotonic()
        if isinstance(frame, bytes):
            if s.turn and s.turn not in s.first_audio:
                s.first_audio[s.turn] = now
                s.outbox.append(_playback("started", s.turn, 0.0))
            s.audio_bytes[s.turn] = s.audio_bytes.get(s.turn, 0) + len(frame)
        else:
            m = json.loads(frame)
            kind = m["type"]
            if kind == "session_started":
                s.started = True
            elif kind == "response_started":
                s.turn = m["turn"]
            elif kind == "turn_complete":
                s.completed[m["number"]] = m
                if m.get("end_reason") != "completed":
                    s.errors.append(f"turn ended {m.get('end_reason')}")
                played = s.audio_bytes.get(m["number"], 0) / 48  # 24 kHz PCM16: 48 bytes a ms
                s.outbox.append(_playback("stopped", m["number"], played))
            elif kind == "error":
                s.errors.append(f"error frame {m.get('code')}")
            elif kind == "session_ended":
                s.ended = True
        s.changed.set()


async def run_session(plan: Plan, session_id: str, token: str, lags: list[float]) -> dict[str, Any]:
    """One conversation; returns its per-turn latencies, timing and what went wrong."""
    url = plan.base_url.replace("http", "ws", 1) + f"/v1/voice/{session_id}"
    speech = frames(speech_like(plan.speech_s), plan.frame_ms)
    quiet = silence(plan.frame_ms / 1000)
    last = endpoint_frame(speech, quiet)
    s, turns = Session(), []
    result: dict[str, Any] = {"turns": turns, "connected_at": None, "finished_at": None}
    try:
        async with websockets.connect(
            url, subprotocols=[SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + token], open_timeout=15
        ) as ws:  # type: ignore[list-item]
            reader = asyncio.create_task(_read(ws, s))
            mic = Mic(ws, plan.frame_ms / 1000, quiet, lags, s.outbox)
            mic_task: asyncio.Task[None] | None = None
            try:
                await s.until(lambda: s.started, 15, "session_started")
                result["connected_at"] = time.monotonic()
                mic_task = asyncio.create_task(mic.run())
                for n in range(1, plan.turns + 1):
                    endpoint = mic.speak(speech, last)
                    await s.until(
                        lambda n=n: n in s.first_audio, plan.turn_timeout_s, "first audio"
                    )
                    if not endpoint.done():  # the VAD ended the turn before we thought it could
                        raise RuntimeError(f"turn {n} answered before its endpointing frame")
                    latency_ms = 1000 * (s.first_audio[n] - endpoint.result())
                    await s.until(
                        lambda n=n: n in s.completed, plan.turn_timeout_s, "turn_complete"
                    )
                    turns.append((latency_ms, s.completed[n].get("ttfa_ms")))
                    await asyncio.sleep(plan.gap_s)
                result["finished_at"] = time.monotonic()
                mic_task.cancel()
                await ws.send(json.dumps({"type": "end"}))
                await s.until(lambda: s.ended, 10, "session_ended")
            finally:
                for task in (mic_task, reader):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
            if ws.close_code not in (None, 1000):
                s.errors.append(f"closed {ws.close_code}")
    except TimeoutError as exc:
        what = exc.args[0] if exc.args else "the service"
        s.errors.append(f"timeout waiting for {what} of turn {len(turns) + 1}")
    except Exception as exc:  # one session's failure is a data point, not the end of the run
        s.errors.append(f"{type(exc).__name__}: {exc}"[:120])
    result["errors"] = s.errors
    return result


def _create_session(base_url: str, token: str) -> str:
    request = urllib.request.Request(
        f"{base_url}/live-sessions",
        data=b'{"mode": "bench"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["id"]


async def _clients(plan: Plan, users: list[str], conn: Connection) -> dict[str, Any]:
    tokens = [mint_token(u, plan.secret) for u in users]
    ids = [await asyncio.to_thread(_create_session, plan.base_url, t) for t in tokens]
    conn.send("ready")
    t0, offsets = await asyncio.to_thread(conn.recv)
    lags: list[float] = []

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t0 + offsets[i] - time.monotonic()))
        return await run_session(plan, ids[i], tokens[i], lags)

    sessions = await asyncio.gather(*(one(i) for i in range(len(users))))
    lags.sort()
    return {"sessions": sessions, "lag_p99_ms": 1000 * _pct(lags, 99) if lags else 0.0}


def client_worker(conn: Connection, plan: Plan, users: list[str], cpus: set[int] | None) -> None:
    """Entry point of a client process: create sessions, say "ready", wait for "go", run."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        conn.send(asyncio.run(_clients(plan, users, conn)))
    except Exception as exc:  # reported to the parent, which prints it
        conn.send({"crash": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


# -- processes, /proc and the OTLP sink (the orchestrating process) -------------------------------


def _pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S  # utime + stime, all threads


def rss_mb(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[21]) * PAGE / 2**20


def listening_port(pid: int, timeout: float = 20.0) -> int:
    """The TCP port `pid` listens on: read its socket inodes from /proc and match them with
    /proc/net/tcp, so the service can bind port 0 and we still learn the port without logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                return int(cols[1].split(":")[1], 16)
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} did not listen within {timeout:.0f} s")


class Sampler(threading.Thread):
    """Samples CPU seconds and RSS of some processes every `every_s` until stopped."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.samples: list[tuple[float, dict[str, float], float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError):
                cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
                self.samples.append((time.monotonic(), cpu, rss_mb(self.pids["service"])))
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_percent(self, name: str, start: float, end: float) -> float:
        inside = [(t, c[name]) for t, c, _ in self.samples if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return 100 * (c1 - c0) / (t1 - t0)

    def peak_cpu_percent(self, name: str, window_s: float = 1.0) -> float:
        best, j = 0.0, 0
        for i, (t, c, _) in enumerate(self.samples):
            while self.samples[j][0] < t - window_s:
                j += 1
            if i > j:
                best = max(
                    best, 100 * (c[name] - self.samples[j][1][name]) / (t - self.samples[j][0])
                )
        return best

    @property
    def peak_rss_mb(self) -> float:
        return max((r for _, _, r in self.samples), default=float("nan"))


class OtlpSink(ThreadingHTTPServer):
    """A local OTLP/HTTP endpoint that answers 200 and counts requests, bytes and spans."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.requests = self.bytes = self.spans = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SinkHandler(BaseHTTPRequestHandler):
    server: OtlpSink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        spans = _count_spans(body) if self.path.endswith("/v1/traces") else 0
        with self.server.lock:
            self.server.requests += 1
            self.server.bytes += len(body)
            self.server.spans += spans
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _count_spans(body: bytes) -> int:
    try:  # opentelemetry-proto comes with the exporter; the count is a check, not a requirement
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError:
        return 0
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "LANGFUSE_", "VOICETRACE_", "GOOGLE_", "GEMINI_"))
        and k not in ("DATABASE_URL", "SSL_CERT_FILE")
    }
    env.update(extra)
    return env


def _spawn(
    argv: list[str],
    log: Path,
    env: dict[str, str],
    cwd: Path,
    cpus: set[int] | None,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    # Affinity is set in the child before exec, so every thread it starts inherits it.
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with log.open("ab") as err:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=stdout or err, stderr=err, preexec_fn=pre
        )


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: the service drains its sessions and flushes telemetry
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def emulator_process(tmp: Path, turns: int, cpus: set[int] | None) -> Iterator[tuple[int, dict]]:
    """`voicetrace emulator` with a real-time scenario; yields (pid, the env that points at it)."""
    scenario = tmp / "scenario.json"
    says = [{"says": f"Spoken turn number {i + 1}.", "reply": REPLY} for i in range(turns)]
    scenario.write_text(json.dumps({"realtime": True, "user_says": says}))
    argv = [
        sys.executable,
        "-m",
        "voicetrace.service.cli",
        "emulator",
        "--port",
        "0",
        "--scenario",
        str(scenario),
    ]
    proc = _spawn(argv, tmp / "emulator.log", _clean_env(), tmp, cpus, stdout=subprocess.PIPE)
    try:
        env: dict[str, str] = {}
        killer = threading.Timer(30, proc.kill)  # a hung start must not hang the bench
        killer.start()
        assert proc.stdout is not None
        for raw in proc.stdout:  # it prints `export NAME=value` lines, then "Ctrl-C to stop."
            line = raw.decode().strip()
            if line.startswith("export "):
                name, _, value = shlex.split(line[7:])[0].partition("=")
                env[name] = value
            if line.startswith("Ctrl-C"):
                break
        killer.cancel()
        if "GOOGLE_GEMINI_BASE_URL" not in env:
            raise RuntimeError(f"the emulator did not start; see {tmp / 'emulator.log'}")
        yield proc.pid, env
    finally:
        _stop(proc, 5.0)
        if proc.stdout is not None:
            proc.stdout.close()


# -- one level -------------------------------------------------------------------------------------


@dataclass
class Level:
    """The measured outcome of one level (N concurrent sessions)."""

    n: int
    export: str
    latencies: list[float]
    server_ttfa: list[float]
    turns_expected: int
    errors: list[str]
    cpu: float
    cpu_peak: float
    rss_idle: float
    rss_peak: float
    emu_cpu: float
    clients_cpu: float
    lag_p99_ms: float
    spans: int | None = None
    log: Path | None = None  # the service's log (warnings and up) for this level
    telemetry: dict[str, Any] = field(default_factory=dict)  # non-zero trouble counters
    saturated: str = ""  # why this row measures the load generator or the machine, if it does

    def p(self, q: float) -> float:
        return _pct(sorted(self.latencies), q) if self.latencies else float("nan")


def run_level(
    n: int, args: argparse.Namespace, tmp: Path, emu: tuple[int, dict], sink: OtlpSink | None
) -> Level:
    secret = os.urandom(16).hex()
    spans_before = sink.spans if sink is not None else 0
    otel = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    if sink is not None:
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    env = _clean_env(
        **emu[1],
        **otel,
        OTEL_SERVICE_NAME="voicetrace-bench",
        VOICETRACE_JWT_SECRET=secret,
        VOICETRACE_PORT="0",
        VOICETRACE_LOG_LEVEL="warning",
        VOICETRACE_SQLITE_PATH=str(tmp / f"bench-{n}-{time.time_ns()}.db"),
    )
    log = tmp / f"service-{n}-{'otlp' if sink else 'none'}.log"
    service = _spawn(
        [sys.executable, "-m", "voicetrace.service.cli", "serve"],
        log,
        env,
        tmp,
        args.service_cpus,
    )
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    sampler: Sampler | None = None
    try:
        base_url = f"http://127.0.0.1:{listening_port(service.pid)}"
        _wait_healthy(base_url)
        rss_idle = rss_mb(service.pid)
        plan = Plan(
            base_url, secret, args.turns, args.speech_s, args.gap_s, args.ramp_s, args.frame_ms
        )
        ctx = mp.get_context("spawn")
        procs = min(args.client_procs, n)
        for w in range(procs):
            parent, child = ctx.Pipe()
            users = [f"bench-user-{i}" for i in range(w, n, procs)]
            p = ctx.Process(target=client_worker, args=(child, plan, users, args.other_cpus))
            p.start()
            child.close()
            workers.append((p, parent))
        for _, conn in workers:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError("a client process did not get ready")
        pids = {"service": service.pid, "emulator": emu[0]}
        pids.update({f"client{i}": p.pid for i, (p, _) in enumerate(workers)})
        sampler = Sampler(pids)
        sampler.start()
        t0 = time.monotonic() + 0.2
        for w, (_, conn) in enumerate(workers):  # session i starts at t0 + i/n of the ramp
            conn.send((t0, [args.ramp_s * i / n for i in range(w, n, procs)]))
        budget = args.ramp_s + args.turns * (args.speech_s + 4 + args.gap_s) + 60
        outs = [conn.recv() if conn.poll(budget) else {"crash": "timed out"} for _, conn in workers]
        sampler.stop()
        health = _get_json(f"{base_url}/health")
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        _stop(service)  # graceful: the exporter flushes, so the sink has every span afterwards
        for p, conn in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
            conn.close()
    errors = [f"client process: {o['crash']}" for o in outs if "crash" in o]
    sessions = [s for o in outs for s in o.get("sessions", [])]
    errors += [e for s in sessions for e in s["errors"]]
    connected = [s["connected_at"] for s in sessions if s["connected_at"]]
    finished = [s["finished_at"] for s in sessions if s["finished_at"]]
    # Steady state: every session connected and none finished yet (or, failing that, all of it).
    start, end = (max(connected), min(finished)) if connected and finished else (t0, t0 + budget)
    if end - start < 2:
        start, end = min(connected, default=t0), max(finished, default=t0 + budget)
    client_cpu = sum(sampler.cpu_percent(k, start, end) for k in pids if k.startswith("client"))
    cpu = sampler.cpu_percent("service", start, end)
    emu_cpu = sampler.cpu_percent("emulator", start, end)
    # Pinned: the emulator and clients share the other CPUs. Unpinned: everything shares all.
    if args.other_cpus:
        busy, capacity, what = emu_cpu + client_cpu, 100 * len(args.other_cpus), "generator CPUs"
    else:
        busy, capacity, what = cpu + emu_cpu + client_cpu, 100 * args.nproc, "machine"
    saturated = f"{what} {busy / capacity:.0%} busy" if busy > 0.9 * capacity else ""
    lag_p99 = max((o.get("lag_p99_ms", 0.0) for o in outs), default=0.0)
    if lag_p99 > LATE_MS:
        saturated = (saturated + ", " if saturated else "") + "clients late"
    return Level(
        n=n,
        export="otlp" if sink else "none",
        latencies=[lat for s in sessions for lat, _ in s["turns"]],
        server_ttfa=[t for s in sessions for _, t in s["turns"] if t is not None],
        turns_expected=n * args.turns,
        errors=errors,
        cpu=cpu,
        cpu_peak=sampler.peak_cpu_percent("service"),
        rss_idle=rss_idle,
        rss_peak=sampler.peak_rss_mb,
        emu_cpu=emu_cpu,
        clients_cpu=client_cpu,
        lag_p99_ms=lag_p99,
        spans=(sink.spans - spans_before) if sink is not None else None,
        log=log,
        saturated=saturated,
        telemetry={
            k: v for k, v in health.get("telemetry", {}).items() if k in TELEMETRY_ISSUES and v
        },
    )


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_healthy(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become healthy at {base_url}") from None
            time.sleep(0.1)


# -- reporting and the command line ---------------------------------------------------------------


HEADER = (
    f"{'N':>4} {'export':>6} {'turns ok':>9} {'err':>4} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
    f"{'max ms':>7} {'srvTTFA':>7} {'CPU%':>5} {'peak%':>5} {'RSS MB':>11} {'emu%':>5} "
    f"{'cli%':>5} {'lag ms':>6} {'spans':>6}"
)


def row(r: Level) -> str:
    ttfa = statistics.median(r.server_ttfa) if r.server_ttfa else math.nan
    worst = max(r.latencies, default=math.nan)
    rss = f"{r.rss_idle:.0f}→{r.rss_peak:.0f}"
    return (
        f"{r.n:>4} {r.export:>6} {len(r.latencies):>4}/{r.turns_expected:<4} {len(r.errors):>4} "
        f"{r.p(50):>7.0f} {r.p(95):>7.0f} {r.p(99):>7.0f} {worst:>7.0f} "
        f"{ttfa:>7.0f} {r.cpu:>5.0f} {r.cpu_peak:>5.0f} {rss:>11} {r.emu_cpu:>5.0f} "
        f"{r.clients_cpu:>5.0f} {r.lag_p99_ms:>6.0f} {'' if r.spans is None else r.spans:>6}"
        + (f"  ⚠ {r.saturated}" if r.saturated else "")
    )


def machine(args: argparse.Namespace) -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo", encoding="utf-8") as f:
        model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    pin = (
        f"service on CPU {sorted(args.service_cpus)}, emulator+clients on {sorted(args.other_cpus)}"
        if args.service_cpus
        else "no CPU pinning"
    )
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · nproc {args.nproc} · "
        f"{model} · "
        f"Python {platform.python_version()} · {pin} · {args.client_procs} client process(es) · "
        f"{args.frame_ms} ms mic frames"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10,50,100,150,200", help="levels, comma-separated")
    parser.add_argument("--turns", type=int, default=3, help="spoken turns per session (1-10)")
    parser.add_argument("--speech-s", type=float, default=1.2, help="speech per turn")
    parser.add_argument("--frame-ms", type=int, default=20, help="microphone frame (10-100 ms)")
    parser.add_argument("--gap-s", type=float, default=0.6, help="pause after each answer")
    parser.add_argument("--ramp-s", type=float, default=4.0, help="stagger session starts")
    parser.add_argument(
        "--otlp-at", type=int, default=100, help="level to repeat with OTLP (0: no)"
    )
    parser.add_argument("--max-p95-ms", type=float, default=1500, help="stop above this p95")
    parser.add_argument("--client-procs", type=int, default=0, help="0: one per spare CPU, ≤ 4")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args(argv)
    try:
        args.levels = sorted({int(x) for x in args.sessions.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--sessions must be comma-separated integers, not {args.sessions!r}")
    if not args.levels or args.levels[0] < 1:
        parser.error("--sessions needs levels of at least 1")
    if args.frame_ms not in (10, 20, 40, 50, 100):
        parser.error("--frame-ms must be one of 10, 20, 40, 50, 100 (whole VAD frames of 10 ms)")
    if not 1 <= args.turns <= 10 or args.speech_s < 0.2 or args.gap_s < 0 or args.ramp_s < 0:
        parser.error("need 1 ≤ --turns ≤ 10, --speech-s ≥ 0.2, --gap-s ≥ 0, --ramp-s ≥ 0")
    cpus = sorted(os.sched_getaffinity(0))
    args.nproc = len(cpus)
    pin = not args.no_pin and len(cpus) >= 2
    args.service_cpus = {cpus[0]} if pin else None
    args.other_cpus = set(cpus[1:]) if pin else None
    spare = len(cpus) - 1 if pin else len(cpus)
    args.client_procs = args.client_procs or max(1, min(4, spare - 1))
    return args


def report(results: Sequence[Level], tmp: Path) -> None:
    """What went wrong, with the tail of the logs (the temporary directory goes away after)."""
    for r in results:
        for e in sorted(set(r.errors))[:5]:
            print(f"  N={r.n} {r.export}: {r.errors.count(e)}× {e}")
        if r.telemetry:
            print(f"  N={r.n} {r.export}: telemetry /health: {r.telemetry}")
        if r.errors and r.log is not None and r.log.exists():
            for line in r.log.read_text(errors="replace").splitlines()[-8:]:
                print(f"    service log: {line[:160]}")
    emulator_log = tmp / "emulator.log"
    if any(r.errors for r in results) and emulator_log.exists():
        for line in emulator_log.read_text(errors="replace").splitlines()[-8:]:
            print(f"    emulator log: {line[:160]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.other_cpus:  # this process (sampler, OTLP sink) stays off the service's CPU too
        os.sched_setaffinity(0, args.other_cpus)
    results: list[Level] = []
    started = time.monotonic()
    print(machine(args), flush=True)
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="voicetrace-scale-") as name:
        tmp = Path(name)
        with emulator_process(tmp, args.turns, args.other_cpus) as emu:
            for n in args.levels:
                results.append(run_level(n, args, tmp, emu, None))
                print(row(results[-1]), flush=True)
                r = results[-1]
                if r.p(95) > args.max_p95_ms or len(r.errors) > 0.05 * n or not r.latencies:
                    print(f"stopping: p95 {r.p(95):.0f} ms, {len(r.errors)} errors at N={n}")
                    break
            if args.otlp_at:
                ok = [r.n for r in results if r.p(95) <= args.max_p95_ms]
                n = min(args.otlp_at, max(ok, default=args.levels[0]))
                sink = OtlpSink()
                threading.Thread(target=sink.serve_forever, daemon=True).start()
                try:
                    results.append(run_level(n, args, tmp, emu, sink))
                    print(row(results[-1]), flush=True)
                finally:
                    sink.shutdown()
                    sink.server_close()
        report(results, tmp)
    print(f"whole run {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
