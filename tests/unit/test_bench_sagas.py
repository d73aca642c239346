"""``bench/sagas.py`` on a fresh install: a clear error, not a traceback, without a server."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import saga.nats.server
from bench import sagas
from saga.errors import ServerNotFoundError
from saga.nats.server import INSTALL_HINT


def test_no_server_binary_is_a_clear_error_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # given an install without the server extra (no nats-server anywhere)
    def missing() -> str:
        raise ServerNotFoundError(INSTALL_HINT)

    monkeypatch.setattr(saga.nats.server, "find_server_binary", missing)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the logs it keeps go there

    # when the bench is run
    code = sagas.main(["--json", "--sagas", "1", "--solo", "1"])

    # then it fails with the hint on stderr and nothing on stdout
    captured = capsys.readouterr()
    assert code == 1
    assert "pip install 'nats-saga[server]'" in captured.err
    assert captured.out == ""
