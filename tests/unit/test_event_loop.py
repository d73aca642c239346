"""The event loop of `saga run` and of participants: uvloop's when installed and wanted,
asyncio's otherwise."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from click.testing import CliRunner

from saga.cli.options import run_async
from saga.eventloop import UVLOOP_ENV, loop_factory, uvloop_wanted
from saga.heap import YOUNG_THRESHOLD
from saga.participant import App, run_app


async def loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_used_when_installed() -> None:
    import uvloop  # the dev extra installs it (extra `fast`)

    assert loop_factory() is uvloop.new_event_loop
    assert run_async(loop_type, loop_factory())().startswith("uvloop")


def test_turned_off_it_is_asyncio() -> None:
    assert loop_factory(False) is None
    assert run_async(loop_type, loop_factory(False))().startswith("asyncio")


def test_the_setting_is_an_option_and_a_variable() -> None:
    from saga.cli import main

    result = CliRunner().invoke(main, ["run", "--help"])
    assert "--uvloop / --no-uvloop" in result.output
    assert "SAGA_UVLOOP" in result.output


def test_the_variable_turns_it_off_as_the_option_does() -> None:
    assert uvloop_wanted(None)
    assert all(uvloop_wanted(v) for v in ("1", "yes", "True", "on"))
    assert not any(uvloop_wanted(v) for v in ("0", "false", "No", "off", " OFF "))


def test_a_participant_runs_on_uvloop_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, restored_gc: None
) -> None:
    """``run_app`` (``saga participant``, the example services, the bench's participants);
    it also tunes the process's collector (:mod:`saga.heap`)."""
    app = App("probe")
    loops: list[str] = []

    async def run(*args: Any, **kwargs: Any) -> None:
        loops.append(await loop_type())

    monkeypatch.setattr(app, "run", run)
    monkeypatch.delenv(UVLOOP_ENV, raising=False)
    run_app(app)
    run_app(app, uvloop=False)
    monkeypatch.setenv(UVLOOP_ENV, "off")
    run_app(app)
    run_app(app, uvloop=True)

    assert [m.split(".")[0] for m in loops] == ["uvloop", "asyncio", "asyncio", "uvloop"]
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_the_participant_command_has_the_setting() -> None:
    from saga.cli import main

    result = CliRunner().invoke(main, ["participant", "--help"])
    assert "--uvloop / --no-uvloop" in result.output
    assert "SAGA_UVLOOP" in result.output
