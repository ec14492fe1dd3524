"""bench/emulator_memory.py runs end to end on a short run and reports what it measured (the
bound itself is the benchmark's business, not a unit test's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_memory_benchmark_drives_real_turns_and_prints_rss_and_a_verdict():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "emulator_memory.py"),
            *("--turns", "60", "--connections", "2", "--reconnect-every", "20"),
            *("--sample-every", "30", "--warmup", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    out = result.stdout
    assert "turns completed: 60 of 60" in out, out + result.stderr
    assert re.search(r"emulator RSS: start \d+\.\d MB", out)
    verdict = "WITHIN THE BOUND" if result.returncode == 0 else "OVER THE BOUND"
    assert result.returncode in (0, 1) and verdict in out
