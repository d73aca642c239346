from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click
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


def test_every_setting_is_an_option_of_run_under_its_own_name_and_variable() -> None:
    from saga.cli.config import ENV, RunConfig
    from saga.cli.run import run

    params = {p.name: p for p in run.params if isinstance(p, click.Option)}
    for name, field in RunConfig.model_fields.items():
        assert name in params, f"{name}: no option of saga run"
        assert params[name].envvar == ENV.get(name)
        assert params[name].default == field.default
    assert set(params) - set(RunConfig.model_fields) == {"config"}


async def _engine_args(found: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    found.update(zip(["definitions", "nats", "data_dir", "settings"], args, strict=False))
    found.update(kwargs)


def test_file_and_environment_reach_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every key of the file is the setting's name, connection settings included."""
    import saga.engine.process
    from saga.cli.config import ENV

    for variable in ENV.values():
        monkeypatch.delenv(variable, raising=False)
    found: dict[str, Any] = {}
    monkeypatch.setattr(saga.engine.process, "run_engine", partial(_engine_args, found))
    (tmp_path / "defs").mkdir()
    ca = tmp_path / "ca.pem"
    path = write(
        tmp_path,
        f"definitions: {tmp_path / 'defs'}\nnats: nats://a:4222\ntls_ca: {ca}\n"
        "user: alice\nadmin: off\npartitions: 4\nreload: false\n",
    )
    monkeypatch.setenv("SAGA_NATS_USER", "bob")
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--partitions", "6"])
    assert result.exit_code == 0, result.output
    assert found["definitions"] == tmp_path / "defs"
    assert (found["nats"].url, found["nats"].tls_ca_file) == ("nats://a:4222", ca)
    assert found["nats"].user == "bob"  # the environment overrides the file
    assert found["settings"].partitions == 6  # and the command line both
    assert found["admin"] is None
    assert found["reload"] is False
