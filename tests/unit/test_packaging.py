"""What the wheel installs: the ``saga`` package only. The example services stay in the
repository's ``services/`` folder; installed, they would claim a top-level name (``services``)
that users' own code has."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_only_the_saga_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=ROOT, include=include)
    assert "saga.participant" in packages
    assert [p for p in packages if p.split(".")[0] != "saga"] == []
    assert (ROOT / "services" / "__init__.py").is_file()  # still runnable from a checkout


def test_ci_runs_the_readmes_test_command_which_leaves_out_the_slow_tests() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(
        line.split("#")[0].strip()
        for line in readme.splitlines()
        if line.rstrip().endswith("# run the tests (what CI runs)")
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == command == "pytest"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pytest_options = config["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in pytest_options["addopts"]
    assert any(marker.startswith("slow:") for marker in pytest_options["markers"])
