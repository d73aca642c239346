from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from saga.cli import main
from saga.cli.config import MASK, masked, read_config, resolved
from saga.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "saga.yaml"
    path.write_text(text)
    return path


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "stream_replicas: nine\nbogus: 1\nstorage: disk\n")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    lines = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{path}:1:1",
        f"{path}:2:1",
        f"{path}:3:1",
    ]
    assert "stream_replicas" in lines[0]
    assert "bogus: Extra inputs are not permitted" in lines[1]


def test_environment_overrides_the_file_and_secrets_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "stream_replicas: 3\npassword: hunter2\nnats: nats://a:4222\n")
    monkeypatch.setenv("SAGA_NATS_URL", "nats://b:4222")
    config, origin = resolved(path)
    assert config.nats == "nats://b:4222"
    assert origin["nats"] == "$SAGA_NATS_URL"
    assert config.stream_replicas == 3
    shown = masked(config)
    assert shown["password"] == MASK
    assert "hunter2" not in str(shown)


def test_config_check_prints_masked_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "password: hunter2\nstream_replicas: 3\n")
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "stream_replicas: 3" in result.output
    assert "hunter2" not in result.output


def test_run_refuses_a_broken_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "storage: disk\n")
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:1: storage" in result.output


def test_the_file_gives_plain_values_to_the_options(tmp_path: Path) -> None:
    path = write(tmp_path, "admin_token: s3cret\nadmin: off\nstream_replicas: 2\n")
    assert read_config(path) == {"admin_token": "s3cret", "admin": "off", "stream_replicas": 2}
