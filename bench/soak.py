"""Soak and fault run: N concurrent sessions for M minutes against a real `voicetrace serve`.

    python bench/soak.py [--sessions 10] [--minutes 1] [--seed 1]

What it does, all on this machine (the emulator stands in for Gemini Live):
- `--sessions` client loops, each creating sessions back to back: 1–3 typed turns, then either a
  clean `end` or (30 %) a disconnect in the middle of a turn;
- an OTLP/HTTP endpoint that accepts, then HANGS (answers nothing for the middle fifth of the
  run), then recovers;
- at 60 % of the run the service is SIGKILLed and restarted on the same port and database (same
  `VOICETRACE_INSTANCE_ID`, as a restarted replica would be);
- a PostgreSQL restart is NOT part of it: the PostgreSQL server here is shared with other work,
  so the run uses the default SQLite store.

It prints one table:
  sessions run        sessions that reached `session_started`
  voice failures      sessions that failed for any reason other than the SIGKILL (e.g.
                      `model_unavailable` while the exporter hangs) — must be 0
  killed in flight    sessions cut by the SIGKILL (expected; each may lose its turn in flight)
  stuck sessions      sessions not ENDED once the run is over — must be 0
  usage lost          input tokens of turns the client saw settle (`turn_complete`) that the
                      database does not have, beyond the one in-flight turn a killed session
                      may lose — must be 0
  wire / db tokens    prompt tokens the emulator billed on the wire (its `usageMetadata` with
                      `turnComplete`) vs input tokens the database recorded
  root spans missing  connected sessions whose `voice_session` span never reached the endpoint
  RSS start → end     of the service process (first run; then after the restart)
A run is marked INVALID when the service could not be started or no session ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from voicetrace.emulator import Emulator
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient

SECRET = "soak-secret-0123456789abcdef0123456789abcdef"
TIMEOUT_S = 20.0


class OtlpSink:
    """OTLP/HTTP traces endpoint that records root spans; `hang` makes it stall every request
    until it is switched back (a backend that accepts connections and never answers)."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.roots: set[str] = set()
        self.requests = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.requests += 1
                deadline = time.monotonic() + 60
                while sink.hang.is_set() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            if span.name == "voice_session":
                                attrs = {kv.key: kv.value.string_value for kv in span.attributes}
                                sink.roots.add(attrs.get("session.id", ""))
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hang.clear()
        self.server.shutdown()


@dataclass
class Sessions:
    started: dict[str, str] = field(default_factory=dict)  # session id → user
    client_turns: dict[str, int] = field(default_factory=dict)
    # input tokens of each turn the client saw settle (`turn_complete`)
    client_tokens: dict[str, list[int]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


class Service:
    def __init__(self, workdir: Path, emulator: Emulator, otlp: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **emulator.env(),
            "VOICETRACE_JWT_SECRET": SECRET,
            "VOICETRACE_SQLITE_PATH": str(workdir / "soak.db"),
            "VOICETRACE_INSTANCE_ID": "soak-replica",
            "VOICETRACE_LOG_LEVEL": "warning",
            "VOICETRACE_MAX_OPEN_SESSIONS_PER_USER": "50",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
        self.log = open(workdir / "serve.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc: subprocess.Popen[bytes] | None = None
        self.down = asyncio.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "voicetrace.service.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def start(self) -> None:
        self.proc = self._spawn()
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("voicetrace serve exited at startup")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.base}/health")).status_code == 200:
                        self.down.clear()
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("voicetrace serve did not become healthy")

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        assert self.proc is not None
        self.down.set()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def one_session(service: Service, user: str, rng: random.Random, out: Sessions) -> None:
    token = mint_token(user, SECRET)
    async with httpx.AsyncClient(base_url=service.base, timeout=TIMEOUT_S) as http:
        created = await http.post(
            "/live-sessions", json={"mode": "soak"}, headers={"Authorization": f"Bearer {token}"}
        )
    if created.status_code != 201:
        raise RuntimeError(f"create: {created.status_code} {created.text[:80]}")
    session_id = created.json()["id"]
    url = service.base.replace("http", "ws", 1) + f"/v1/voice/{session_id}"
    async with VoiceClient.connect(url, token) as client:
        await client.wait_for("session_started", timeout=TIMEOUT_S)
        out.started[session_id] = user
        out.client_turns[session_id] = 0
        out.client_tokens[session_id] = []
        try:
            for turn in range(1, rng.randint(1, 3) + 1):
                await client.send("text", text="Hello, what is nearby?")
                done = await client.wait_for("turn_complete", count=turn, timeout=TIMEOUT_S)
                out.client_turns[session_id] = turn
                out.client_tokens[session_id].append(int(done.get("input_tokens") or 0))
            if rng.random() < 0.3:
                await client.send("text", text="And then?")
                await asyncio.sleep(rng.uniform(0, 0.3))
                return  # leaving the block closes the socket mid-turn: a random disconnect
            await client.send("end")
            await client.wait_for("session_ended", timeout=TIMEOUT_S)
        except Exception:
            if service.down.is_set():
                out.killed.add(session_id)
                return
            raise
        errors = [m for m in client.of_type("error") if m.get("code") != "session_paused"]
        if errors:
            raise RuntimeError(f"error frame: {errors[0].get('code')}")


async def client_loop(
    service: Service, index: int, until: float, rng: random.Random, out: Sessions
) -> None:
    while time.monotonic() < until:
        if service.down.is_set():
            await asyncio.sleep(0.2)
            continue
        try:
            await one_session(service, f"soak-user-{index}", rng, out)
        except Exception as exc:
            if service.down.is_set():
                continue  # cut by the SIGKILL: counted via `killed` when it had started
            out.failures.append(f"{type(exc).__name__}: {exc}"[:120])
            await asyncio.sleep(0.2)


async def stored(service: Service, out: Sessions) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=service.base, timeout=TIMEOUT_S) as http:
        for session_id, user in out.started.items():
            auth = {"Authorization": f"Bearer {mint_token(user, SECRET)}"}
            response = await http.get(f"/live-sessions/{session_id}", headers=auth)
            rows[session_id] = response.json()
    return rows


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    total_s = args.minutes * 60
    out = Sessions()
    sink = OtlpSink()
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="voicetrace-soak-") as tmp:
        async with Emulator() as emulator:
            service = Service(Path(tmp), emulator, sink.url)
            try:
                await service.start()
            except RuntimeError as exc:
                print(f"INVALID run: {exc}")
                return 2
            rss["start"] = service.rss_mb()
            started = time.monotonic()
            until = started + total_s
            loops = [
                asyncio.create_task(
                    client_loop(service, i, until, random.Random(rng.random()), out)
                )
                for i in range(args.sessions)
            ]
            try:
                await asyncio.sleep(total_s * 0.2)
                sink.hang.set()  # the exporter hangs …
                await asyncio.sleep(total_s * 0.2)
                sink.hang.clear()  # … and recovers
                await asyncio.sleep(total_s * 0.2)
                rss["before kill"] = service.rss_mb()
                service.kill()
                await service.start()
                rss["after restart"] = service.rss_mb()
                await asyncio.gather(*loops)
                rss["end"] = service.rss_mb()
                await asyncio.sleep(2)  # let the batch processor export the last roots
                rows = await stored(service, out)
            finally:
                for task in loops:
                    task.cancel()
                service.stop()
                sink.close()
            wire_tokens = sum(
                int((e.message or {}).get("usageMetadata", {}).get("promptTokenCount") or 0)
                for e in emulator.wire.select(direction="out", key="serverContent")
                if (e.message or {}).get("serverContent", {}).get("turnComplete")
            )
    return report(args, out, rows, wire_tokens, sink, rss)


def report(
    args: argparse.Namespace,
    out: Sessions,
    rows: dict[str, dict[str, Any]],
    wire_tokens: int,
    sink: OtlpSink,
    rss: dict[str, float],
) -> int:
    stuck = [s for s, row in rows.items() if row.get("state") != "ENDED"]
    db_tokens: dict[str, int] = {}
    for session_id, row in rows.items():
        summary = row.get("summary") or {}
        usage = row.get("usage") or {}
        db_tokens[session_id] = max(
            int(summary.get("input_tokens") or 0), int(usage.get("input_tokens") or 0)
        )
    lost = lost_killed = 0
    for session_id, seen in out.client_tokens.items():
        # A killed session may lose the turn in flight: its last settled one at most.
        allowance = seen[-1] if session_id in out.killed and seen else 0
        missing_tokens = max(0, sum(seen) - db_tokens.get(session_id, 0))
        lost += max(0, missing_tokens - allowance)
        lost_killed += min(missing_tokens, allowance)
    missing = [s for s in out.started if s not in sink.roots]
    missing_killed = [s for s in missing if s in out.killed]
    print(f"soak: {args.sessions} concurrent clients × {args.minutes:g} min, seed {args.seed}")
    print("PostgreSQL restart: skipped (the server is shared here)")
    table = [
        ("sessions run", len(out.started)),
        ("voice failures", len(out.failures)),
        ("killed in flight", len(out.killed)),
        ("stuck sessions", len(stuck)),
        ("usage lost (input tokens, beyond in-flight)", lost),
        ("usage lost in killed in-flight turns", lost_killed),
        ("wire / db input tokens", f"{wire_tokens} / {sum(db_tokens.values())}"),
        (
            "root spans missing (normal / killed)",
            f"{len(missing) - len(missing_killed)} / {len(missing_killed)}",
        ),
        ("OTLP requests (incl. hung)", sink.requests),
        ("RSS MB start → before kill", f"{rss['start']:.0f} → {rss['before kill']:.0f}"),
        ("RSS MB after restart → end", f"{rss['after restart']:.0f} → {rss['end']:.0f}"),
    ]
    width = max(len(name) for name, _ in table)
    for name, value in table:
        print(f"  {name:<{width}}  {value}")
    for failure in sorted(set(out.failures))[:10]:
        print(f"  failure: {failure}")
    if not out.started:
        print("INVALID run: no session started")
        return 2
    ok = not out.failures and not stuck and lost == 0
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent client loops")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.sessions < 1 or args.minutes <= 0:
        parser.error("--sessions must be ≥ 1 and --minutes > 0")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
