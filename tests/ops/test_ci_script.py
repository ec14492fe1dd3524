""".ci/run installs the checks' binaries only when needed, then runs exactly the README's test
command."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CI_RUN = REPO / ".ci" / "run"


def _readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    (command,) = [
        line.strip() for line in readme.splitlines() if line.strip().endswith(".venv/bin/pytest")
    ]
    return command


def test_ci_runs_exactly_the_readme_test_command_last():
    lines = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[-1] == _readme_test_command()


def test_ci_installs_the_binaries_from_debian_only_under_ci_when_missing_and_root():
    script = CI_RUN.read_text()
    assert re.search(r'if \[ "\$\{CI:-\}" = "true" \]', script)
    assert "for binary in prometheus promtool docker-compose chromium" in script
    assert '[ "$(id -u)" = "0" ]' in script
    assert "apt-get update" in script
    assert re.search(
        r"apt-get install -y --no-install-recommends \\\n\s+prometheus docker-compose chromium",
        script,
    )
    assert os.access(CI_RUN, os.X_OK)
    syntax = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
