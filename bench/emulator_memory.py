"""Does a long-running `voicetrace emulator` stay flat? Its RSS over many turns, against the bound.

    python bench/emulator_memory.py [--turns 10000] [--connections 4] [--reconnect-every 200]

Starts a real `voicetrace emulator` subprocess (TLS, a scenario file with fast pacing) and drives
`--turns` text turns through it with the real google-genai SDK, from `--connections` concurrent
conversations. Every conversation asks for session resumption, so each turn leaves a handle and
a snapshot behind, and reconnects with its last handle every `--reconnect-every` turns. Replies
are audio: about 0.8 s each, in 100 ms chunks (~13 KB of base64 per message), so the wire log
sees about 1 GB of frames over 10k turns — what used to grow the process to ~920 MB.

The emulator's RSS (VmRSS of the subprocess, from /proc) is sampled every `--sample-every` turns.
The bound (docs/emulator.md): the wire log holds at most 32 MiB charged (frame size + 1 KiB per
frame), resumption keeps at most 4 handles per conversation and 10,000 in total, tokens at most
10,000; so RSS must stay under `--bound-mb` (200 MB by default: ~60 MB for the interpreter with
its imports, the 32 MiB log at up to ~2x its charge, headroom) and, once warm, grow by less than
`--flat-mb` (16 MB) between the first sample after `--warmup` turns and the last one.

The run is INVALID (and says so) when turns failed or did not all complete, or on a machine
without /proc; an invalid run proves nothing about the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from google import genai
from google.genai import types

MODEL = "gemini-3.8-live"
VOICETRACE = Path(sys.executable).with_name("voicetrace")
SCENARIO = {"speed": 2000.0, "chunk_ms": 100, "ms_per_char": 10.0, "max_reply_s": 1.0}


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc status")


async def start_emulator(scenario_path: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        str(VOICETRACE),
        "emulator",
        "--port",
        "0",
        "--scenario",
        str(scenario_path),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    env: dict[str, str] = {}
    while len(env) < 3:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        if not line:
            raise RuntimeError("the emulator exited before printing its address")
        if line.strip().startswith("export "):
            name, _, value = line.strip().removeprefix("export ").partition("=")
            env[name] = value.strip("'")
    return process, env


async def conversation(number: int, turns: int, reconnect_every: int, progress: Progress) -> None:
    client = genai.Client()
    handle: str | None = None
    left = turns
    while left > 0:
        resumption = types.SessionResumptionConfig(handle=handle)
        config = types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            output_audio_transcription=types.AudioTranscriptionConfig(),
            session_resumption=resumption,
        )
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            for _ in range(min(reconnect_every, left)):
                text = f"Conversation {number}, turn {turns - left + 1}: hello there"
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text=text)])
                )
                complete = False
                async for message in session.receive():
                    complete = complete or bool(
                        message.server_content and message.server_content.turn_complete
                    )
                if not complete:
                    raise RuntimeError("a turn ended without turnComplete")
                # The handle follows turnComplete: it is the first message of the next receive.
                async for message in session.receive():
                    if message.session_resumption_update:
                        handle = message.session_resumption_update.new_handle or handle
                        break
                left -= 1
                progress.done += 1


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "scenario.json"
        scenario.write_text(json.dumps(SCENARIO))
        process, env = await start_emulator(scenario)
        os.environ.update(env)
        progress = Progress()
        samples: list[tuple[int, float]] = [(0, rss_mb(process.pid))]
        per = -(-args.turns // args.connections)

        async def one(number: int) -> None:
            try:
                await conversation(number, per, args.reconnect_every, progress)
            except Exception as exc:  # counted: a failed conversation makes the run invalid
                progress.failed += 1
                progress.errors.append(f"conversation {number}: {exc!r}")

        started = time.monotonic()
        tasks = [asyncio.create_task(one(n)) for n in range(args.connections)]
        next_sample = args.sample_every
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
            if progress.done >= next_sample:
                samples.append((progress.done, rss_mb(process.pid)))
                print(
                    f"  {progress.done:>6} turns  emulator RSS {samples[-1][1]:7.1f} MB", flush=True
                )
                next_sample += args.sample_every
        samples.append((progress.done, rss_mb(process.pid)))
        elapsed = time.monotonic() - started
        process.terminate()
        await process.wait()

    peak = max(mb for _, mb in samples)
    warm = next(((t, mb) for t, mb in samples if t >= args.warmup), samples[-1])
    growth = samples[-1][1] - warm[1]
    print()
    print(f"turns completed: {progress.done} of {per * args.connections} in {elapsed:.0f} s")
    print(f"emulator RSS: start {samples[0][1]:.1f} MB, after {warm[0]} turns {warm[1]:.1f} MB,")
    print(f"              end {samples[-1][1]:.1f} MB, peak {peak:.1f} MB")
    print(f"growth after warm-up: {growth:+.1f} MB (flat means < {args.flat_mb} MB)")
    print(f"bound: peak < {args.bound_mb} MB")
    if progress.failed or progress.done < per * args.connections:
        print("INVALID: not every turn completed:", *progress.errors[:3], sep="\n  ")
        return 2
    within = peak < args.bound_mb and growth < args.flat_mb
    print("WITHIN THE BOUND" if within else "OVER THE BOUND")
    return 0 if within else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--reconnect-every", type=int, default=200)
    parser.add_argument("--sample-every", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--bound-mb", type=float, default=200.0)
    parser.add_argument("--flat-mb", type=float, default=16.0)
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        print("INVALID: no /proc on this machine, RSS cannot be read")
        sys.exit(2)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
