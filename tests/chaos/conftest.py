"""Chaos runs: a short version in every ``pytest``; the full one with ``--chaos-full``
(or ``SAGA_CHAOS_FULL=1``), which prints its figures at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.harness import Figures

_FIGURES: list[Figures] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        default=False,
        help="run the full chaos suite (1,000 sagas and more faults) and print its figures",
    )


@dataclass(frozen=True)
class Scale:
    full: bool

    def sagas(self, short: int, full: int) -> int:
        return full if self.full else short

    def seconds(self, short: float, full: float) -> float:
        return full if self.full else short


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    full = (
        bool(request.config.getoption("--chaos-full")) or os.environ.get("SAGA_CHAOS_FULL") == "1"
    )
    return Scale(full)


@pytest.fixture
def figures(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Figures]:
    found = Figures(scenario=request.node.name.removeprefix("test_"))
    yield found
    _FIGURES.append(found)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("chaos figures")
    for found in _FIGURES:
        terminalreporter.write_line(found.line())
