"""Sessions per core: voicetrace (telemetry on, off) against a bare relay of the same frames.

    python bench/capacity.py --sessions 20 --seconds 30 --repeat 3    # ~6 minutes
    python bench/capacity.py --smoke                                  # 3 sessions, 8 s, once
    python bench/capacity.py --variants "telemetry on,no deflate,bare relay"
    python bench/capacity.py --variants "telemetry on" --repeat 1 --profile DIR   # needs py-spy
    python bench/capacity.py --gc-probe      # also: GC pauses and event-loop callbacks ≥ 20 ms

Processes, so that only the relay's own work counts against it (parts in bench/capacity/):
  service    the relay under test, alone on the first CPU (sched_setaffinity before exec):
             `voicetrace serve` with telemetry on (OTLP/HTTP to a counting sink in this process)
             or off (OTEL_SDK_DISABLED=true), or the bare relay (capacity/relay.py: uvicorn +
             Starlette WebSocket + a `websockets` client to the same upstream; no SDK, no
             telemetry, no permessage-deflate) — the floor; optionally `no deflate`: voicetrace
             with telemetry on whose peers do not negotiate permessage-deflate (what turning it
             off in the service would give);
  upstream   a fake Gemini Live server over TLS speaking the real frames (capacity/upstream.py),
             fresh per run, on the other CPU(s), its CPU measured;
  generator  `--client-procs` processes of real-time microphones over the voicetrace protocol
             (capacity/load.py), on the other CPU(s).
Variants run interleaved (the order rotates each repeat) and `--repeat` times, each in a fresh
service process. Per run: the service's idle CPU and RSS; sessions connect (RSS idle); then every
session talks for `--seconds` — 20 ms frames of room noise, 1.2 s speech bursts, a 2 s answer in
40 ms chunks, 0.6 s pause — while its CPU and RSS are sampled from /proc.

Reported per run: CPU (100 % = one core) over the window in which every session talks; %/sess =
(CPU − idle CPU) / N; sess/core = how many sessions fit under 75 % of a core; latency through
the relay per frame in both directions, from send-time tags inside the PCM (client → fake
upstream, fake upstream → client; one monotonic clock); RSS per session idle and active (over
the process's RSS before any client); the fake upstream's and the generator's CPU; noise = what
other processes of the machine used on the service's core. A run is INVALID, with the reason and
without numbers, when a session failed to connect, a turn failed or timed out, more than
`--max-late-pct` of the microphone frames (or of the upstream's paced chunks) left more than
`--late-ms` behind their clock, telemetry dropped data, or no spans arrived. Then min/median per
variant over valid runs, and the issue-11 targets judged on the medians. `--profile DIR` adds
py-spy's view of each run (capacity/profile.py: costs, paths, µs per message). Every process
runs at `--nice` (-10) when allowed: on a shared machine, others would otherwise set the latency.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the capacity/ parts, when imported

from capacity import report
from capacity.procs import OtlpSink, claim
from capacity.profile import parse as parse_profile
from capacity.profile import render as render_profile
from capacity.run import DEFAULT_VARIANTS, VARIANTS, Run, run_once
from voicetrace.emulator.tls import write_certificates


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="talking time per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--frame-ms", type=int, default=20, help="microphone frame (10-100 ms)")
    parser.add_argument("--reply-s", type=float, default=2.0, help="model answer length")
    parser.add_argument("--late-ms", type=float, default=20.0, help="a frame this late is late")
    parser.add_argument("--max-late-pct", type=float, default=1.0, help="late frames allowed")
    parser.add_argument("--turn-timeout-s", type=float, default=10.0)
    parser.add_argument("--client-procs", type=int, default=3, help="load generator processes")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="nice value of every benchmark process (needs privilege; ignored without it): "
        "on a shared machine other processes would otherwise set the latency",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the service with py-spy (pip install py-spy) into this directory and "
        "print its top costs",
    )
    parser.add_argument(
        "--gc-probe",
        action="store_true",
        help="log the service's garbage-collector pauses and slow event-loop callbacks",
    )
    parser.add_argument("--smoke", action="store_true", help="3 sessions, 8 s, one repeat")
    parser.add_argument(
        "--inject-stall-ms",
        type=float,
        default=0.0,
        help="fault injection for the self-check: block each generator loop this long every second",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sessions, args.seconds, args.repeat, args.client_procs = 3, 8.0, 1, 1
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if args.sessions < 1 or args.repeat < 1 or args.seconds < 6 or args.client_procs < 1:
        parser.error("need --sessions ≥ 1, --repeat ≥ 1, --seconds ≥ 6, --client-procs ≥ 1")
    if args.frame_ms not in (10, 20, 40, 50, 100):
        parser.error("--frame-ms must be one of 10, 20, 40, 50, 100")
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    args.service_cpus = {cpus[0]} if pin else None
    args.other_cpus = set(cpus[1:]) if pin else None
    args.nproc = len(cpus)
    return args


def machine(args: argparse.Namespace) -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    pin = (
        f"service on CPU {sorted(args.service_cpus)}, "
        f"upstream + generator on {sorted(args.other_cpus)}"
        if args.service_cpus
        else "no CPU pinning"
    )
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · nproc {args.nproc} · {model} · "
        f"Python {platform.python_version()} · {pin} · {args.client_procs} generator process(es) · "
        f"{args.sessions} sessions × {args.seconds:g} s × {args.repeat} · {args.frame_ms} ms frames"
        f" · nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    )


def _print_profile(run: Run) -> None:
    if run.profile is None or not run.profile.exists() or run.invalid:
        return
    with run.profile.open(encoding="utf-8") as f:
        profile = parse_profile(f)
    lines = render_profile(profile, run.cpu, run.frames_per_s, run.chunks_per_s)
    print("\n".join("    " + line for line in lines), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    affinity, nice = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    try:
        return _main(args)
    finally:  # when called as a library (tests), give the caller its CPUs and priority back
        os.sched_setaffinity(0, affinity)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)


def _main(args: argparse.Namespace) -> int:
    claim(args.other_cpus, args.nice)  # the sampler and OTLP sink stay off the service's CPU
    started = time.monotonic()
    print(machine(args), flush=True)  # after claim(): shows the nice value obtained
    print(report.RUN_HEADER, flush=True)
    runs: list[Run] = []
    sink = OtlpSink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="voicetrace-capacity-") as name:
            tmp = Path(name)
            certs = write_certificates(tmp)
            for rep in range(1, args.repeat + 1):
                k = (rep - 1) % len(args.variants)  # rotate: no variant always runs first
                for variant in args.variants[k:] + args.variants[:k]:
                    runs.append(run_once(variant, rep, args, tmp, certs, sink))
                    print(report.run_row(runs[-1]), flush=True)
                    _print_profile(runs[-1])
                    if runs[-1].gc:
                        print(f"    {runs[-1].gc}", flush=True)
    finally:
        sink.shutdown()
        sink.server_close()
    lines, medians = report.summary(runs)
    print()
    print(report.SUMMARY_HEADER)
    for line in lines:
        print(line)
    print()
    for line in report.targets(medians, args.variants):
        print(line)
    print(report.noise_note(runs))
    print(f"whole run {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
