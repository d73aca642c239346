"""``saga run`` stops cleanly on SIGTERM even when the server is gone: one line, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from saga.nats.server import EmbeddedServer
from tests.conftest import DEFINITIONS, ROOT


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_while_the_server_is_down_exits_with_one_line(tmp_path: Path) -> None:
    server = EmbeddedServer(store_dir=tmp_path / "nats").start()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SAGA_ADMIN_ADDR": "off",
        "SAGA_LOG_LEVEL": "WARNING",
    }
    with out.open("wb") as stdout, err.open("wb") as stderr:
        engine = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "saga",
                "run",
                "--nats",
                server.url,
                "--no-reload",
                "--definitions",
                str(DEFINITIONS),
            ],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    try:
        wait_until(lambda: "engine running" in out.read_text(), "the engine to start")
        before = err.read_text().count("nats:")
        server.close()
        # The engine has noticed: its reconnect attempts are refused and logged.
        wait_until(lambda: err.read_text().count("nats:") > before, "the engine to lose the server")
        engine.send_signal(signal.SIGTERM)
        code = engine.wait(30)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        server.close()
    errors = err.read_text()
    assert "Traceback" not in errors, errors
    assert code == 0, errors
    last = errors.strip().splitlines()[-1]
    assert "stopped without draining (the NATS server is unreachable)" in last, errors
