"""Processes of a run and what /proc says about them: spawn pinned, sample CPU and RSS, stop.

CPU is utime+stime of all threads from /proc/<pid>/stat (100 % = one core); RSS is VmRSS. The
listening port is read from /proc/<pid>/fd and /proc/net/tcp, so every server can bind port 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TICK_S = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK_S


def rss_mb(pid: int) -> float:
    return int(_stat(pid)[21]) * PAGE / 2**20


def cpu_busy(cpus: set[int]) -> tuple[float, float]:
    """(busy, total) jiffies of these CPUs from /proc/stat: the whole machine's load on them."""
    busy = total = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            v = [int(x) for x in line.split()[1:]]
            total += sum(v[:8])
            busy += sum(v[:8]) - v[3] - v[4]  # minus idle and iowait
    return busy, total


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a harness killed mid-run must not leave servers running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def claim(cpus: set[int] | None, nice: int) -> None:
    """Pin the calling process and lower its nice value (best effort: needs the privilege)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)


def spawn(
    argv: list[str],
    log: Path,
    env: dict[str, str],
    cwd: Path,
    cpus: set[int] | None,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    # Affinity and priority are set in the child before exec: every thread it starts inherits them.
    def pre() -> None:
        _die_with_parent()
        claim(cpus, nice)

    with log.open("ab") as err:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=err, stderr=err, preexec_fn=pre)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening_port(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    return int(cols[1].split(":")[1], 16)
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} did not listen within {timeout:.0f} s")


def get_json(url: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            get_json(f"{base_url}/health", 2)
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{base_url} did not become healthy")
        time.sleep(0.1)


class Sampler(threading.Thread):
    """CPU seconds of some processes, RSS of the first, and busy jiffies of some CPUs, sampled
    every `every_s`; `cpu_percent` over a window uses the samples inside it."""

    def __init__(self, pids: dict[str, int], cpus: set[int], every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids, self.cpus, self.every_s = pids, cpus, every_s
        self.rss_of = next(iter(pids))
        self.samples: list[tuple[float, dict[str, float], float, tuple[float, float]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError, ValueError):
                cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
                rss = rss_mb(self.pids[self.rss_of])
                self.samples.append((time.monotonic(), cpu, rss, cpu_busy(self.cpus)))
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def _window(self, start: float, end: float) -> list[Any]:
        inside = [s for s in self.samples if start <= s[0] <= end]
        return inside if len(inside) >= 2 else []

    def cpu_percent(self, name: str, start: float, end: float) -> float:
        w = self._window(start, end)
        if not w:
            return float("nan")
        return 100 * (w[-1][1][name] - w[0][1][name]) / (w[-1][0] - w[0][0])

    def machine_busy(self, start: float, end: float) -> float:
        """How busy the sampled CPUs were (all processes of the machine), 0-100 %."""
        w = self._window(start, end)
        if not w:
            return float("nan")
        busy, total = w[-1][3][0] - w[0][3][0], w[-1][3][1] - w[0][3][1]
        return 100 * busy / total if total else float("nan")

    def peak_rss(self, start: float, end: float) -> float:
        return max((s[2] for s in self.samples if start <= s[0] <= end), default=float("nan"))


class OtlpSink(ThreadingHTTPServer):
    """A local OTLP/HTTP endpoint that answers 200 and counts spans (telemetry-on runs)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.spans = 0
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
            self.server.spans += spans
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _count_spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
