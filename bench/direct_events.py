"""What tracing a client-direct session costs the server: CPU per event batch.

    python bench/direct_events.py [--batches 300] [--repeat 3]

A real `voicetrace serve` (its own process, the emulator standing in for Gemini Live, which
mints the ephemeral tokens) receives `POST /api/live/trace/event` batches as the browser client
sends them: every 200 ms, each a slice of a spoken turn (user audio frames, model audio chunks,
transcripts, usage, turn end). For batches of 1, 20 and 100 events it reports the service's own
CPU (utime + stime from /proc, so the load generator is not counted) per batch and per event, and
the request latency the client sees (p50/p95). A run where a batch was refused is INVALID.

The browser's audio path does no tracing work: the page's AudioWorklet only captures and plays
PCM; events are appended to an in-memory list on the main thread and posted by a 200 ms timer
with `fetch(…, {keepalive: true})` (service/voicetrace/service/web/static/direct.js), so a slow
or failing post never touches capture or playback.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from voicetrace.emulator import Emulator
from voicetrace.service.api.auth import mint_token

SIZES = (1, 20, 100)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(seq: itertools.count[int], n: int) -> list[dict[str, object]]:
    """`n` events shaped like a spoken turn's (mostly audio, a transcript, usage at the end)."""
    now = time.time() * 1000
    kinds = []
    for i in range(n):
        if i % 10 == 9:
            kinds.append({"type": "output_transcript", "text": "the old town is lovely "})
        elif i % 2:
            kinds.append({"type": "model_audio", "duration_ms": 40.0})
        else:
            kinds.append({"type": "user_audio", "duration_ms": 20.0, "voiced": True})
    return [{"seq": next(seq), "at_ms": now, **k} for k in kinds]


async def _run(base: str, token: str, pid: int, size: int, batches: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        started = await http.post("/api/live/token", json={})
        started.raise_for_status()
        session_id = started.json()["sessionId"]
        seq = itertools.count(1)
        latencies: list[float] = []
        cpu0 = _cpu_s(pid)
        for _ in range(batches):
            body = {"sessionId": session_id, "events": _events(seq, size)}
            t0 = time.perf_counter()
            r = await http.post("/api/live/trace/event", json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 204:
                return {"invalid": float(r.status_code)}
            await asyncio.sleep(0.06)  # paced under the 20 batches/s limit (a browser: 5/s)
        cpu = _cpu_s(pid) - cpu0
        await http.post("/api/live/trace/end", json={"sessionId": session_id})
    latencies.sort()
    return {
        "cpu_us_batch": cpu / batches * 1e6,
        "cpu_us_event": cpu / (batches * size) * 1e6,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    secret = secrets.token_hex(32)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        async with Emulator() as emulator:
            env = {
                **os.environ,
                **emulator.env(),
                "VOICETRACE_JWT_SECRET": secret,
                "VOICETRACE_SQLITE_PATH": str(Path(tmp) / "bench.db"),
                "VOICETRACE_LOG_LEVEL": "warning",
                "OTEL_TRACES_EXPORTER": "none",
            }
            cmd = [sys.executable, "-m", "voicetrace.service.cli", "serve", "--port", str(port)]
            proc = subprocess.Popen(cmd, env=env)  # noqa: ASYNC220 — started once, not awaited
            try:
                async with httpx.AsyncClient() as http:
                    for _ in range(200):
                        try:
                            if (await http.get(f"{base}/health")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await asyncio.sleep(0.1)
                token = mint_token("bench", secret)
                rows: dict[int, list[dict[str, float]]] = {size: [] for size in SIZES}
                for _ in range(args.repeat):
                    for size in SIZES:  # interleaved, so noise spreads over every size
                        rows[size].append(await _run(base, token, proc.pid, size, args.batches))
            finally:
                proc.terminate()
                proc.wait(15)
    print(
        f"direct-mode trace events · {args.batches} batches × {args.repeat}"
        f" · nproc {os.cpu_count()}"
    )
    print("events/batch  server CPU µs/batch min/med  µs/event min/med  latency p50/p95 ms (med)")
    for size, runs in rows.items():
        if any("invalid" in r for r in runs):
            print(f"{size:>12}  INVALID: a batch was refused ({runs})")
            continue
        per_batch = sorted(r["cpu_us_batch"] for r in runs)
        per_event = sorted(r["cpu_us_event"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p95 = statistics.median(r["p95_ms"] for r in runs)
        print(
            f"{size:>12}  {per_batch[0]:>10.0f} / {statistics.median(per_batch):<8.0f}"
            f"  {per_event[0]:>7.1f} / {statistics.median(per_event):<7.1f}  {p50:.2f} / {p95:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
