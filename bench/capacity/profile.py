"""Where the service's CPU goes: py-spy's collapsed stacks, grouped into the costs that matter.

    python -m capacity.profile STACKS.txt [--cpu 32.4 --frames-per-s 1000 --chunks-per-s 230]

Each sample is charged to one cost: walking from the innermost frame outwards, the first frame
that matches a rule below names it (so pydantic inside the SDK's receive counts as "SDK parse",
zlib inside websockets as "permessage-deflate"). With the run's CPU and message rates, the two
paths also get a cost per message: everything under the bridge's microphone handling and the
SDK's send per microphone frame; everything under the SDK's receive and the bridge's model loop
per model audio chunk (their transcripts and turn messages ride along, as they do in a run).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# (cost, pattern on "function (file:line)"), innermost match wins; order breaks ties per frame.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("permessage-deflate", r"permessage_deflate\.py"),
        ("is_voiced", r"is_voiced \("),
        ("SDK parse (pydantic models)", r"pydantic|google/genai/(types|_common)\.py"),
        ("SDK live (other)", r"google/genai/"),
        ("telemetry (voicetrace.telemetry)", r"voicetrace/telemetry/"),
        ("OpenTelemetry SDK", r"opentelemetry/"),
        ("json", r"/json/"),
        ("base64", r"base64\.py"),
        ("TLS", r"/ssl\.py|sslproto\.py"),
        ("websockets framing", r"websockets/"),
        ("uvicorn / starlette", r"uvicorn/|starlette/|fastapi/"),
        ("database (SQLAlchemy, aiosqlite)", r"sqlalchemy/|aiosqlite/|sqlite3"),
        ("voicetrace service", r"voicetrace/service/"),
        ("sockets + event loop (asyncio)", r"asyncio/|selectors\.py|socket\.py"),
        ("logging", r"/logging/"),
    )
)
# Samples of a thread waiting (py-spy cannot always tell from the OS): not CPU, dropped.
IDLE = re.compile(r"^(EpollSelector\.select|Condition\.wait|Event\.wait|SocketIO\.readinto) ")
# Which message a sample serves, by where its stack runs (first match, outermost-first order).
PATHS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "mic: bridge + SDK send (frame → upstream)",
            r"VoiceBridge\._on_audio \(|Relay\.upstream \(",
        ),
        (
            "mic: client leg inbound (parse, inflate)",
            r"WebSocketsSansIOProtocol\.data_received|"
            r"WebSocket\.receive \(",
        ),
        ("model: SDK receive + parse", r"GeminiLive\.events \(|AsyncSession\.receive \("),
        (
            "model: bridge → client (audio, transcripts)",
            r"VoiceBridge\._model_loop \(|"
            r"Relay\.downstream \(",
        ),
        (
            "model: upstream leg inbound (TLS, inflate)",
            r"SSLProtocol\.buffer_updated|"
            r"websockets/asyncio/connection\.py",
        ),
        ("telemetry threads (export, emitter)", r"BatchProcessor|Emitter\._run|PeriodicExporting"),
    )
)


@dataclass
class Profile:
    samples: int
    costs: Counter[str]
    leaves: Counter[str]
    idle: int
    paths: Counter[str]

    def share(self, prefix: str) -> float:
        return sum(n for k, n in self.paths.items() if k.startswith(prefix)) / self.samples


def parse(lines: Iterable[str]) -> Profile:
    costs: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    total = idle = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if IDLE.match(frames[-1]):
            idle += n
            continue
        total += n
        leaves[_short(frames[-1])] += n
        costs[_charge(frames)] += n
        paths[_path(stack)] += n
    return Profile(total, costs, leaves, idle, paths)


def _path(stack: str) -> str:
    for name, pattern in PATHS:
        if pattern.search(stack):
            return name
    return "other (loop, timers, HTTP, turn ends)"


def _charge(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in RULES:
            if pattern.search(frame):
                return name
    return "other"


def _short(frame: str) -> str:
    """`func (…/site-packages/pkg/mod.py:12)` → `func (pkg/mod.py)`."""
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    path = re.sub(r"^.*?(site-packages|python3\.\d+)/", "", m[2])
    return f"{m[1]} ({path})"


def render(
    p: Profile,
    cpu: float | None = None,
    frames_per_s: float | None = None,
    chunks_per_s: float | None = None,
    top: int = 12,
) -> list[str]:
    if not p.samples:
        return ["profile: no samples"]
    core = "  % of a core" if cpu else ""
    out = [
        f"{p.samples} busy samples ({p.idle} idle ones dropped)",
        f"{'cost':<44} {'share':>6}{core}",
    ]
    for name, n in p.costs.most_common():
        share = n / p.samples
        out.append(f"{name:<44} {share:>6.1%}" + (f"  {share * cpu:>6.1f}" if cpu else ""))
    out.append(f"{'path (what the sample was doing)':<44} {'share':>6}{core}")
    for name, n in p.paths.most_common():
        share = n / p.samples
        out.append(f"{name:<44} {share:>6.1%}" + (f"  {share * cpu:>6.1f}" if cpu else ""))
    out.append(f"top {top} innermost frames (self time):")
    out += [f"  {n / p.samples:>6.1%}  {leaf}" for leaf, n in p.leaves.most_common(top)]
    if cpu and frames_per_s and chunks_per_s:
        # CPU seconds per second × share of a path / messages per second = µs per message.
        mic_us = 1e4 * cpu * p.share("mic") / frames_per_s
        model_us = 1e4 * cpu * p.share("model") / chunks_per_s
        out.append(
            f"per message: microphone frame {mic_us:.0f} µs, 40 ms model audio chunk "
            f"{model_us:.0f} µs (with its share of transcripts); 'other' is not attributed"
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--cpu", type=float, help="the run's CPU %% (per message costs)")
    parser.add_argument("--frames-per-s", type=float)
    parser.add_argument("--chunks-per-s", type=float)
    args = parser.parse_args(argv)
    with args.stacks.open(encoding="utf-8") as f:
        profile = parse(f)
    print("\n".join(render(profile, args.cpu, args.frames_per_s, args.chunks_per_s)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
