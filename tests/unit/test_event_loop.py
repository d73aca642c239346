"""`saga run`'s event loop: uvloop's when installed and wanted, asyncio's otherwise."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from saga.cli.options import run_async
from saga.engine.process import loop_factory


async def loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_used_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
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
