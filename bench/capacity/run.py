"""One measured run of one variant, and the loop that interleaves variants and repeats."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from voicetrace.emulator.tls import CertFiles

from capacity import procs
from capacity.load import Plan, Result, worker

BENCH_DIR = Path(__file__).resolve().parents[1]
# "no deflate": voicetrace with telemetry on, but its peers do not negotiate permessage-deflate
# (the clients do not offer it, the fake upstream refuses it) — what a server-side switch gives.
VARIANTS = ("telemetry on", "telemetry off", "bare relay", "no deflate")
DEFAULT_VARIANTS = VARIANTS[:3]


def telemetry_on(variant: str) -> bool:
    return variant in ("telemetry on", "no deflate")


# /health telemetry counters that mean a telemetry-on run lost or failed something.
TELEMETRY_TROUBLE = ("spans_dropped", "export_failures", "tracer_errors", "emit_dropped")
RAMP_S = 2.0  # session starts are spread over this, so turns do not line up


@dataclass
class Run:
    """What one run of one variant measured, and why it is not a number if it is not."""

    variant: str
    repeat: int
    sessions: int
    cpu: float = math.nan  # service % of one core, steady state with every session talking
    base_cpu: float = math.nan  # the same process before any client connected
    rss_base: float = math.nan  # MB before any client
    rss_idle: float = math.nan  # MB with every session connected, no audio yet
    rss_active: float = math.nan  # MB peak while talking
    up_ms: list[float] = field(default_factory=list)
    down_ms: list[float] = field(default_factory=list)
    turns_ok: int = 0
    upstream_cpu: float = math.nan
    clients_cpu: float = math.nan
    noise_cpu: float = math.nan  # other processes of the machine on the service's core
    spans: int | None = None
    gc: str = ""  # --gc-probe: the collector's pauses in the window
    profile: Path | None = None  # py-spy's collapsed stacks of the service over the window
    frames_per_s: float = math.nan  # microphone frames into the service, steady state
    chunks_per_s: float = math.nan  # model audio chunks into the service, whole run
    invalid: list[str] = field(default_factory=list)

    @property
    def per_session(self) -> float:
        return (self.cpu - self.base_cpu) / self.sessions

    @property
    def per_core(self) -> float:
        """Sessions one core carries at 75 % (the process's own idle cost comes off first)."""
        return (75 - self.base_cpu) / self.per_session if self.per_session > 0 else math.nan

    def kb_per_session(self, rss: float) -> float:
        return 1024 * (rss - self.rss_base) / self.sessions


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "LANGFUSE_", "VOICETRACE_", "GOOGLE_", "GEMINI_"))
        and k not in ("DATABASE_URL", "SSL_CERT_FILE")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env.get("PYTHONPATH", "")]).rstrip(":")
    env.update(extra)
    return env


def _target(
    variant: str, tmp: Path, upstream_env: dict[str, str], sink_url: str, secret: str
) -> tuple[list[str], dict[str, str]]:
    if variant == "bare relay":
        return [sys.executable, "-m", "capacity.relay"], _clean_env(**upstream_env)
    otel = (
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "voicetrace-bench",
        }
        if telemetry_on(variant)
        else {"OTEL_SDK_DISABLED": "true"}
    )
    env = _clean_env(
        **upstream_env,
        **otel,
        VOICETRACE_JWT_SECRET=secret,
        VOICETRACE_PORT="0",
        VOICETRACE_LOG_LEVEL="warning",
        VOICETRACE_SQLITE_PATH=str(tmp / f"bench-{time.time_ns()}.db"),
    )
    return [sys.executable, "-m", "voicetrace.service.cli", "serve"], env


def run_once(
    variant: str,
    repeat: int,
    args: argparse.Namespace,
    tmp: Path,
    certs: CertFiles,
    sink: procs.OtlpSink,
) -> Run:
    run = Run(variant, repeat, args.sessions)
    tag = f"{variant.replace(' ', '-')}-{repeat}"
    stats_path = tmp / f"upstream-{tag}.json"
    upstream = procs.spawn(
        [
            sys.executable,
            "-m",
            "capacity.upstream",
            "--cert",
            str(certs.cert_path),
            "--key",
            str(certs.key_path),
            "--stats",
            str(stats_path),
            "--reply-s",
            str(args.reply_s),
            *(["--no-deflate"] if variant == "no deflate" else []),
        ],
        tmp / f"upstream-{tag}.log",
        _clean_env(),
        tmp,
        args.other_cpus,
        args.nice,
    )
    service = None
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    sampler = None
    spy: subprocess.Popen[bytes] | None = None
    window: tuple[float, float] | None = None
    spans_before = sink.spans
    try:
        up_port = procs.listening_port(upstream.pid)
        upstream_env = {
            "GOOGLE_GEMINI_BASE_URL": f"https://127.0.0.1:{up_port}",
            "SSL_CERT_FILE": str(certs.ca_path),
            "GEMINI_API_KEY": "bench-key",
        }
        secret = os.urandom(24).hex()
        argv, env = _target(variant, tmp, upstream_env, sink.url, secret)
        gc_log = tmp / f"gc-{tag}.json"
        if args.gc_probe:
            env["PYTHONPATH"] = (
                f"{BENCH_DIR / 'capacity' / 'gcprobe'}{os.pathsep}{env['PYTHONPATH']}"
            )
            env["CAPACITY_GC_LOG"] = str(gc_log)
        service = procs.spawn(
            argv, tmp / f"service-{tag}.log", env, tmp, args.service_cpus, args.nice
        )
        base_url = f"http://127.0.0.1:{procs.listening_port(service.pid)}"
        procs.wait_healthy(base_url, service)
        time.sleep(0.5)
        c0, t_base = procs.cpu_seconds(service.pid), time.monotonic()
        time.sleep(1.5)
        run.base_cpu = 100 * (procs.cpu_seconds(service.pid) - c0) / (time.monotonic() - t_base)
        run.rss_base = procs.rss_mb(service.pid)

        plan = Plan(
            base_url,
            None if variant == "bare relay" else secret,
            args.seconds,
            args.frame_ms,
            late_ms=args.late_ms,
            stall_ms=args.inject_stall_ms,
            turn_timeout_s=args.turn_timeout_s,
            deflate=variant != "no deflate",
        )
        ctx = mp.get_context("spawn")
        n_procs = min(args.client_procs, args.sessions)
        for w in range(n_procs):
            parent, child = ctx.Pipe()
            users = [f"bench-{repeat}-{i}" for i in range(w, args.sessions, n_procs)]
            p = ctx.Process(
                target=worker, args=(child, plan, users, args.other_cpus, args.nice), daemon=True
            )
            p.start()
            child.close()
            workers.append((p, parent))
        for _, conn in workers:
            if not conn.poll(120):
                raise RuntimeError("a generator process did not get ready")
            msg = conn.recv()
            if msg != "ready":  # it crashed before connecting
                raise RuntimeError("; ".join(msg.errors)[:200])
        pids = {"service": service.pid, "upstream": upstream.pid}
        pids.update({f"client{i}": p.pid for i, (p, _) in enumerate(workers)})
        sampler = procs.Sampler(pids, args.service_cpus or set())
        sampler.start()
        time.sleep(1.0)
        run.rss_idle = procs.rss_mb(service.pid)

        t0 = time.monotonic() + 0.3
        for w, (_, conn) in enumerate(workers):
            conn.send((t0, [RAMP_S * i / args.sessions for i in range(w, args.sessions, n_procs)]))
        if args.profile:
            spy = _profile(service.pid, args, tmp, tag, t0)
        outs: list[Result] = []
        for _, conn in workers:
            outs.append(
                conn.recv() if conn.poll(args.seconds + 60) else Result(errors=["timed out"])
            )
        window = (t0 + RAMP_S + 1.0, t0 + args.seconds - 1.0)
        sampler.stop()
        if spy is not None:
            spy.wait(30)
            run.profile = args.profile / f"{tag}.txt"
        run.cpu = sampler.cpu_percent("service", *window)
        run.upstream_cpu = sampler.cpu_percent("upstream", *window)
        run.clients_cpu = sum(
            sampler.cpu_percent(k, *window) for k in sampler.pids if k.startswith("client")
        )
        run.noise_cpu = (
            max(0.0, sampler.machine_busy(*window) - run.cpu) if args.service_cpus else math.nan
        )
        run.rss_active = sampler.peak_rss(*window)
        health = procs.get_json(f"{base_url}/health")
        _check_clients(run, outs, args)
        _check_telemetry(run, health, variant)
    except (RuntimeError, OSError) as exc:
        run.invalid.append(f"run failed: {exc}"[:160])
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if service is not None:
            procs.stop(service)
        for p, conn in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
            conn.close()
        procs.stop(upstream, 5.0)
        if spy is not None:
            procs.stop(spy)
    if telemetry_on(variant):
        run.spans = sink.spans - spans_before
        if not run.invalid and run.spans == 0:
            run.invalid.append("no spans reached the OTLP sink")
    _check_upstream(run, stats_path, args)
    if args.gc_probe and window is not None:
        run.gc = _gc_summary(tmp / f"gc-{tag}.json", window)
    if math.isnan(run.cpu) and not run.invalid:
        run.invalid.append("CPU window too short (raise --seconds)")
    return run


def _profile(
    pid: int, args: argparse.Namespace, tmp: Path, tag: str, t0: float
) -> subprocess.Popen[bytes]:
    """py-spy (not a dependency: install it yourself) on the service over the steady window,
    non-blocking so the sampled process is not paused, from the generator's CPU."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    time.sleep(max(0.0, t0 + RAMP_S + 1.0 - time.monotonic()))
    duration = max(1, int(args.seconds - RAMP_S - 2.0))
    argv = [spy, "record", "-p", str(pid), "-d", str(duration), "-r", "250", "--nonblocking"]
    argv += ["-f", "raw", "-o", str(args.profile / f"{tag}.txt")]
    return procs.spawn(argv, tmp / f"py-spy-{tag}.log", dict(os.environ), tmp, args.other_cpus)


def _gc_summary(path: Path, window: tuple[float, float]) -> str:
    try:
        pauses = [json.loads(line) for line in path.read_text().splitlines() if line]
    except (OSError, ValueError):
        pauses = []
    inside = [(p[1], p[2]) for p in pauses if window[0] <= p[0] <= window[1] and p[1] >= 0]
    slow = [p for p in pauses if window[0] <= p[0] <= window[1] and p[1] < 0]
    slow.sort(key=lambda p: -p[2])
    seconds = window[1] - window[0]
    parts = []
    for gen in (0, 1, 2):
        pauses = sorted(ms for g, ms in inside if g == gen)
        if pauses:
            parts.append(f"gen{gen}: {len(pauses)}× ≥1 ms, max {pauses[-1]:.0f} ms")
    total = sum(ms for _, ms in inside)
    worst = "; ".join(f"{p[2]:.0f} ms {p[3]}" for p in slow[:3])
    return (
        f"gc pauses ≥ 1 ms in the window: {', '.join(parts) or 'none'}; "
        f"{total / seconds / 10:.2f} % of the time; {len(slow)} loop callbacks ≥ 20 ms"
        + (f" (worst: {worst})" if worst else "")
    )


def _check_clients(run: Run, outs: list[Result], args: argparse.Namespace) -> None:
    frames = sum(o.frames for o in outs)
    late = sum(o.late_frames for o in outs)
    run.turns_ok = sum(o.turns_ok for o in outs)
    run.down_ms = [x for o in outs for x in o.down_ms]
    failed = sum(o.turns_failed for o in outs)
    connected = sum(o.connected for o in outs)
    errors = [e for o in outs for e in o.errors]
    if connected < run.sessions:
        run.invalid.append(f"{run.sessions - connected} sessions did not connect")
    if failed:
        run.invalid.append(f"{failed} turns failed ({errors[0] if errors else '?'})")
    elif errors:
        run.invalid.append(f"{len(errors)} client errors ({errors[0]})")
    if run.turns_ok == 0 and not failed:
        run.invalid.append("no turn completed")
    if frames and late / frames > args.max_late_pct / 100:
        worst = max(o.max_late_ms for o in outs)
        run.invalid.append(
            f"clients late: {100 * late / frames:.1f}% of frames > {args.late_ms:g} ms "
            f"(max {worst:.0f} ms)"
        )


def _check_telemetry(run: Run, health: dict, variant: str) -> None:
    if not telemetry_on(variant):
        return
    trouble = {k: v for k, v in health.get("telemetry", {}).items() if k in TELEMETRY_TROUBLE and v}
    if trouble:
        run.invalid.append(f"telemetry lost data: {trouble}")


def _check_upstream(run: Run, stats_path: Path, args: argparse.Namespace) -> None:
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        run.invalid.append("the fake upstream wrote no statistics")
        return
    run.up_ms = stats["up_ms"]
    run.frames_per_s = run.sessions * 1000 / args.frame_ms
    run.chunks_per_s = stats["chunks_out"] / args.seconds
    paced = stats["pace_late_ms"]
    late = sum(1 for x in paced if x > args.late_ms)
    if paced and late / len(paced) > args.max_late_pct / 100:
        run.invalid.append(f"fake upstream late: {100 * late / len(paced):.1f}% of chunks")
    if stats["protocol_errors"]:
        run.invalid.append(f"upstream protocol errors: {stats['protocol_errors'][:2]}")
