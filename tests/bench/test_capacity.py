"""The capacity benchmark runs end to end and refuses to report runs it cannot trust.

Real processes all the way: the service (`voicetrace serve`) or the bare relay pinned to a CPU, the
fake TLS Gemini upstream and the generator processes; these are smoke-sized runs (a few sessions,
a few seconds), so they pin the table and the self-check, not the numbers.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "capacity.py"
VARIANTS = ("telemetry on", "telemetry off", "bare relay")
NUMBER = r"[\d.]+"
VALID_ROW = re.compile(
    rf"^(?P<variant>{'|'.join(VARIANTS)})\s+(?P<rep>\d+)\s+(?P<n>\d+)\s+(?P<cpu>{NUMBER})\s+"
    rf"(?P<per>{NUMBER})\s+(?P<core>\d+)\s+(?P<up>{NUMBER}/{NUMBER}/{NUMBER})\s+"
    rf"(?P<down>{NUMBER}/{NUMBER}/{NUMBER})\s+(?P<rss>\d+)\s+-?\d+\s+-?\d+\s+(?P<turns>\d+)\s+"
    rf"{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+ok$"
)
INVALID_ROW = re.compile(rf"^(?P<variant>{'|'.join(VARIANTS)})\s+\d+\s+\d+\s+INVALID: (?P<why>.+)$")


@pytest.fixture
def capacity() -> ModuleType:
    """bench/ is scripts, not a package: load the file (it puts its capacity/ parts on sys.path)."""
    spec = importlib.util.spec_from_file_location("capacity_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(out: str) -> tuple[list[re.Match[str]], list[re.Match[str]]]:
    lines = out.splitlines()
    valid = [m for ln in lines if (m := VALID_ROW.match(ln))]
    invalid = [m for ln in lines if (m := INVALID_ROW.match(ln))]
    return valid, invalid


def test_smoke_run_reports_every_variant_as_numbers_or_as_invalid_with_a_reason(
    capacity, capsys
) -> None:
    assert capacity.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"nproc \d+ · .+ · Python 3\.\d+", out)
    valid, invalid = _rows(out)
    assert sorted(m["variant"] for m in valid + invalid) == sorted(VARIANTS), out
    assert valid, f"no valid run at all in a 3-session smoke run:\n{out}"
    for m in valid:
        assert float(m["cpu"]) > 0 and float(m["per"]) > 0 and int(m["core"]) > 0, m[0]
        for direction in ("up", "down"):
            p50, p95, p99 = map(float, m[direction].split("/"))
            assert 0 < p50 <= p95 <= p99, m[0]
        assert int(m["turns"]) >= 3 and int(m["rss"]) > 10, m[0]  # a turn per session at least
    for m in invalid:
        assert m["why"].strip(), m[0]
    assert "%/sess min/med" in out and "sessions per core" in out and "noise:" in out


def test_a_generator_that_falls_behind_its_pace_makes_the_run_invalid(capacity, capsys) -> None:
    argv = ["--smoke", "--variants", "bare relay", "--inject-stall-ms", "200"]
    assert capacity.main(argv) == 0
    valid, invalid = _rows(capsys.readouterr().out)
    assert not valid
    assert len(invalid) == 1 and "clients late" in invalid[0]["why"]


def test_a_turn_that_does_not_complete_makes_the_run_invalid(capacity, capsys) -> None:
    # A 2 s answer cannot complete within 0.5 s: every first turn times out.
    argv = ["--smoke", "--variants", "bare relay", "--turn-timeout-s", "0.5"]
    assert capacity.main(argv) == 0
    out = capsys.readouterr().out
    valid, invalid = _rows(out)
    assert not valid
    assert len(invalid) == 1 and "turns failed" in invalid[0]["why"], out
    assert "no valid run of: bare relay —" in out


def test_latency_tags_survive_base64_in_either_alphabet(capacity) -> None:
    import base64

    tags = sys.modules["capacity.tags"]
    frame = tags.tagged(bytes(range(256)) * 3, 1234.5678, tags.END_OF_SPEECH)
    assert tags.read(frame) == (1234.5678, tags.END_OF_SPEECH)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        assert tags.read_b64(encode(frame).decode()) == (1234.5678, tags.END_OF_SPEECH)
    # The tag is quiet: every tag sample is 0..255, below the voiced threshold.
    from voicetrace.telemetry.instrumentation.audio import is_voiced

    assert not is_voiced(tags.tagged(bytes(640), 1e9, 1))
