"""docs/testing.md is executed: its Python blocks, in order, are one test module run by pytest
(in a child process, so its fixtures and its nats-server are its own)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DOC = ROOT / "docs" / "testing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_testing_guide_runs_as_a_test_module(tmp_path: Path) -> None:
    blocks = BLOCK.findall(DOC.read_text())
    module = tmp_path / "test_testing_guide.py"
    module.write_text("\n\n".join(blocks))

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            str(module),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    tests = len(re.findall(r"^(?:async )?def test_", module.read_text(), re.MULTILINE))
    assert f"{tests + 1} passed" in run.stdout  # the last test runs in both transports
