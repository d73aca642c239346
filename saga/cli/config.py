"""``saga run`` settings from one YAML file, below the environment and the command line.

Precedence: command-line option > ``SAGA_*`` environment variable > config file >
default. The file is validated at start-up against :class:`RunConfig` and every
problem is reported at once, with its line. ``saga config check`` prints the result
with secrets masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from saga.definition.duration import parse_duration
from saga.definition.loader import format_path
from saga.definition.yaml_source import YamlProblem, load_yaml
from saga.errors import ConfigError

MASK = "********"


def _off(value: Any) -> Any:
    """YAML reads an unquoted ``off`` as false."""
    return "off" if value is False else value


def retention_seconds(value: Any) -> float:
    """``7d``, ``12h``…, or ``0``/``never`` (keep for ever) as seconds (0 for ever)."""
    if value in (0, "0", "never", "forever") or value is False:
        return 0.0
    return parse_duration(value).total_seconds()


def _retention(value: Any) -> str:
    retention_seconds(value)  # raises ValueError with the reason
    return "never" if value in (0, "0", False) else str(value)


class RunConfig(BaseModel):
    """Every setting of ``saga run``; the key is the option's name with ``_`` for ``-``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    definitions: Path = Path("definitions")
    """Folder (or file) of saga definitions [SAGA_DEFINITIONS]."""
    data_dir: Path = Path(".saga-data")
    """Store of the embedded nats-server, used when no NATS URL is given."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """[SAGA_LOG_LEVEL]"""
    admin: Annotated[str, BeforeValidator(_off)] = "127.0.0.1:7480"
    """Admin API address HOST:PORT, or off [SAGA_ADMIN_ADDR]."""
    admin_token: SecretStr | None = None
    """Bearer token of the admin API [SAGA_ADMIN_TOKEN]."""
    reload: bool = True
    """Pick up changed definitions without a restart [SAGA_RELOAD]."""
    stream_replicas: int = Field(1, ge=1, le=5)
    """Replicas of the engine's streams and bucket [SAGA_STREAM_REPLICAS]."""
    storage: Literal["file", "memory"] = "file"
    """[SAGA_STREAM_STORAGE]"""
    finished_ttl: Annotated[str, BeforeValidator(_retention)] = "7d"
    """How long a completed or compensated instance is kept, or never (keep for ever)
    [SAGA_FINISHED_TTL]."""
    partitions: int = Field(0, ge=0, le=1024)
    """Partitions dealt among engine replicas; 0 turns partitioning off [SAGA_PARTITIONS]."""
    nats: str | None = None
    """NATS URL(s), comma separated; the embedded server when absent [SAGA_NATS_URL]."""
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey: Path | None = None
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


ENV = {
    "definitions": "SAGA_DEFINITIONS",
    "log_level": "SAGA_LOG_LEVEL",
    "admin": "SAGA_ADMIN_ADDR",
    "admin_token": "SAGA_ADMIN_TOKEN",
    "reload": "SAGA_RELOAD",
    "stream_replicas": "SAGA_STREAM_REPLICAS",
    "storage": "SAGA_STREAM_STORAGE",
    "finished_ttl": "SAGA_FINISHED_TTL",
    "partitions": "SAGA_PARTITIONS",
    "nats": "SAGA_NATS_URL",
    "user": "SAGA_NATS_USER",
    "password": "SAGA_NATS_PASSWORD",
    "token": "SAGA_NATS_TOKEN",
    "nkey": "SAGA_NATS_NKEY",
    "creds": "SAGA_NATS_CREDS",
    "tls_ca": "SAGA_NATS_TLS_CA",
    "tls_cert": "SAGA_NATS_TLS_CERT",
    "tls_key": "SAGA_NATS_TLS_KEY",
}
"""The environment variable of each setting (the same names the options read)."""

SECRETS = ("admin_token", "password", "token")


def read_config(path: Path) -> dict[str, Any]:
    """The file's settings, validated; :class:`ConfigError` lists every problem with its line."""
    try:
        text = path.read_text(encoding="utf-8")
        data, source = load_yaml(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except YamlProblem as exc:
        raise ConfigError(f"{path}:{exc.line}:{exc.column}: {exc.message}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: a config file is a mapping of settings")
    try:
        checked = RunConfig.model_validate(data)
    except ValidationError as exc:
        found = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            line, column = source.locate(loc)
            found.append((line, column, f"{format_path(loc, data)}: {error['msg']}"))
        lines = [f"{path}:{line}:{column}: {text}" for line, column, text in sorted(found)]
        raise ConfigError("\n".join(lines)) from None
    return {key: _plain(getattr(checked, key)) for key in data}


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def resolved(path: Path | None) -> tuple[RunConfig, dict[str, str]]:
    """File and environment merged (environment wins); also where each setting came from."""
    values: dict[str, Any] = read_config(path) if path else {}
    origin = {key: str(path) for key in values}
    for key, variable in ENV.items():
        if variable in os.environ:
            values[key] = os.environ[variable]
            origin[key] = f"${variable}"
    try:
        return RunConfig.model_validate(values), origin
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def masked(config: RunConfig) -> dict[str, Any]:
    """JSON-ready settings with every secret replaced by a mask."""
    data = config.model_dump(mode="json")
    for key in SECRETS:
        if data.get(key) is not None:
            data[key] = MASK
    return data
