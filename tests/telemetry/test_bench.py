"""The overhead benchmark stays runnable and honest (it refuses to report a run that lost spans)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "telemetry_overhead.py"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/ is scripts, not a package: load the file (registered, for its dataclasses)."""
    spec = importlib.util.spec_from_file_location("telemetry_overhead", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_benchmark_reports_caller_and_process_cpu_for_every_emitter(bench, capsys) -> None:
    assert bench.main(["--turns", "20", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"nproc \d+ · .+ · Python 3\.\d+", out)
    for name in ("voicetrace", "no metrics", "plain OTel SDK", "Langfuse SDK"):
        row = re.search(rf"{name}\s+([\d.]+)\s+[\d.]+x\s+([\d.]+)\s+[\d.]+x", out)
        assert row, f"no caller/process row for {name}:\n{out}"
        caller, process = map(float, row.groups())
        assert 0 < caller <= process * 1.5, name  # the process clock includes the caller's
    assert "caller" in out and "process" in out and "target ≤ 1.2" in out


def test_benchmark_refuses_a_run_that_lost_spans(bench) -> None:
    def lossy() -> object:
        rig = bench.voicetrace_rig(metrics=False)
        rig.exporter.export = lambda spans: bench.SpanExportResult.SUCCESS  # counts nothing
        return rig

    with pytest.raises(RuntimeError, match="spans exported"):
        bench.measure(lossy, 5)
