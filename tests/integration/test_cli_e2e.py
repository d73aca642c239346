"""The commands a user types, as separate processes against a server the user runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.nats.server import EmbeddedServer
from tests.conftest import DEFINITIONS

SERVICES = ("inventory", "payment", "shipping")


def saga(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saga", *args, "--nats", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs.txt"


@pytest.fixture
def running(nats_server: EmbeddedServer, logs: Path) -> Iterator[str]:
    """``saga run`` and ``saga participant`` processes against an external server."""
    url = nats_server.url
    env = {**os.environ, "SAGA_LOG_LEVEL": "WARNING"}
    log_file = logs.open("ab")
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "saga", "run", "--nats", url, "--definitions", str(DEFINITIONS)],
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
    ]
    children += [
        subprocess.Popen(
            [sys.executable, "-m", "saga", "participant", f"services.{name}:app", "--nats", url],
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
        for name in SERVICES
    ]
    try:
        deadline = time.monotonic() + 30
        while saga("list", url=url).returncode != 0:  # until the engine has provisioned
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.1)
        yield url
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        codes = [child.wait(20) for child in children]
        log_file.close()
        assert codes == [0] * len(children), logs.read_text()


def order(order_id: str, **extra: object) -> str:
    return json.dumps(
        {
            "order_id": order_id,
            "customer_id": "c-1",
            "total": 50,
            "currency": "EUR",
            "items": [{"sku": "SKU-1", "qty": 1}],
            "address": {"country": "NL"},
            **extra,
        }
    )


def test_start_status_list_against_external_server(running: str) -> None:
    done = saga(
        "start",
        "order-fulfilment",
        "--data",
        order("cli-1"),
        "--wait",
        "--definitions",
        str(DEFINITIONS),
        url=running,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "cli-1"
    assert "status    completed" in done.stdout

    declined = saga(
        "start",
        "order-fulfilment",
        "--data",
        order("cli-2", total=5000),
        "--wait",
        "--definitions",
        str(DEFINITIONS),
        url=running,
    )
    assert "status    compensated" in declined.stdout
    assert declined.returncode == 0

    status = saga("status", "cli-2", "--json", url=running)
    state = json.loads(status.stdout)
    assert state["status"] == "compensated"
    assert state["failure_step"] == "charge_payment"
    assert state["steps"]["reserve_inventory"]["compensation"] == "done"

    waterfall = saga("trace", "cli-2", url=running)
    assert waterfall.returncode == 0, waterfall.stderr
    lines = waterfall.stdout.splitlines()
    assert lines[0].startswith("saga order-fulfilment v1  id cli-2  compensated")
    assert any(
        line.startswith("charge_payment") and "failed" in line and "█" in line for line in lines
    )
    assert any(line.startswith("undo reserve_inventory") and "done" in line for line in lines)

    listed = saga("list", "--state", "compensated", url=running)
    assert "cli-2" in listed.stdout
    assert "cli-1" not in listed.stdout


def test_status_of_unknown_id_is_a_clear_error(nats_server: EmbeddedServer) -> None:
    result = saga("status", "nope", url=nats_server.url)
    assert result.returncode != 0
    assert "Error" in result.stderr


def test_demo_runs_and_every_saga_ends_as_expected() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "saga", "demo", "--count", "16"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16/16 sagas ended as expected" in result.stdout
    assert "compensated at book_hotel" in result.stdout
    assert "  web console     http://127.0.0.1:" in result.stdout


def test_admin_api_and_operator_commands(running: str, logs: Path) -> None:
    done = saga(
        "start",
        "order-fulfilment",
        "--data",
        order("cli-3"),
        "--wait",
        "--definitions",
        str(DEFINITIONS),
        url=running,
    )
    assert done.returncode == 0, done.stderr
    refused = saga("abort", "cli-3", "--reason", "customer called", url=running)
    assert refused.returncode == 1
    assert "abort refused: cannot abort: instance is completed" in refused.stderr
    missing = saga("retry", "nobody", url=running)
    assert "retry refused: no instance 'nobody'" in missing.stderr

    line = next(line for line in logs.read_text().splitlines() if line.startswith("admin API on "))
    url = line.removeprefix("admin API on ").strip()
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ready"
    console = f"web console on {url}/console/"
    assert console in logs.read_text().splitlines()
    with urllib.request.urlopen(url + "/console/sagas?q=cli-3", timeout=5) as response:
        assert "saga.completed" in response.read().decode()  # the id opens its page


def test_run_takes_its_settings_from_a_config_file(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    config = tmp_path / "saga.yaml"
    config.write_text(
        f"nats: {nats_server.url}\ndefinitions: {DEFINITIONS}\nadmin: off\nlog_level: WARNING\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SAGA_ADMIN_ADDR"}
    child = subprocess.Popen(
        [sys.executable, "-m", "saga", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("engine running 2 saga definition(s)"), first
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0
