"""``saga run`` settings from one YAML file, below the environment and the command line.

Each setting is declared once, as a field of :class:`RunConfig` with an :class:`Option`:
the ``saga run`` options, their ``SAGA_*`` variables (:data:`ENV`) and the file's keys
(the field names) are all made from it.

Precedence: command-line option > ``SAGA_*`` environment variable > config file >
default. The file is validated at start-up against :class:`RunConfig` and every
problem is reported at once, with its line. ``saga config check`` prints the result
with secrets masked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import click
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from saga.definition.duration import parse_duration
from saga.definition.loader import format_path
from saga.definition.yaml_source import YamlProblem, load_yaml
from saga.errors import ConfigError
from saga.heap import YOUNG_THRESHOLD

MASK = "********"
DEFINITIONS_HELP = "Folder (or file) of saga definitions."


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


@dataclass(frozen=True)
class Option:
    """How a setting of :class:`RunConfig` is given on the command line and in the
    environment: the one declaration the ``saga run`` options, :data:`ENV` and the config
    file keys are made from."""

    flag: str
    """``--admin``, or ``--reload/--no-reload`` for a switch."""
    help: str | None = None
    env: str | None = None
    """The ``SAGA_*`` variable that sets it."""
    type: Any = None
    """The click type when not a plain string (a path, a range, a choice)."""
    nats: str | None = None
    """The :class:`~saga.nats.connection.NatsSettings` field it feeds: the connection
    options every command that talks to NATS takes."""


_FILE = click.Path(path_type=Path)


class RunConfig(BaseModel):
    """Every setting of ``saga run``; the key is the option's name with ``_`` for ``-``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    definitions: Annotated[
        Path,
        Option(
            "--definitions",
            DEFINITIONS_HELP + " [env SAGA_DEFINITIONS]",
            "SAGA_DEFINITIONS",
            click.Path(path_type=Path, exists=True),
        ),
    ] = Path("definitions")
    data_dir: Annotated[
        Path,
        Option(
            "--data-dir",
            "Store of the embedded nats-server (used when no --nats is given).",
            type=_FILE,
        ),
    ] = Path(".saga-data")
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], Option("--log-level", env="SAGA_LOG_LEVEL")
    ] = "INFO"
    admin: Annotated[
        str,
        BeforeValidator(_off),
        Option(
            "--admin",
            "Admin HTTP API address HOST:PORT, or 'off' [env SAGA_ADMIN_ADDR].",
            "SAGA_ADMIN_ADDR",
        ),
    ] = "127.0.0.1:7480"
    admin_token: Annotated[
        SecretStr | None,
        Option(
            "--admin-token",
            "Bearer token the admin API and operator actions over NATS require "
            "[env SAGA_ADMIN_TOKEN].",
            "SAGA_ADMIN_TOKEN",
        ),
    ] = None
    reload: Annotated[
        bool,
        Option(
            "--reload/--no-reload",
            "Pick up changed definitions without a restart (validated first) [env SAGA_RELOAD].",
            "SAGA_RELOAD",
        ),
    ] = True
    uvloop: Annotated[
        bool,
        Option(
            "--uvloop/--no-uvloop",
            "Run on uvloop's event loop when it is installed (extra 'fast'): less CPU per "
            "message [env SAGA_UVLOOP].",
            "SAGA_UVLOOP",
        ),
    ] = True
    gc_threshold: Annotated[
        int,
        Field(ge=0),
        Option(
            "--gc-threshold",
            "Allocations between young garbage collections once started (Python's default: "
            "700); 0 leaves Python's collector as it is [env SAGA_GC_THRESHOLD].",
            "SAGA_GC_THRESHOLD",
            click.IntRange(0),
        ),
    ] = YOUNG_THRESHOLD
    stream_replicas: Annotated[
        int,
        Field(ge=1, le=5),
        Option(
            "--stream-replicas",
            "Replicas of the engine's streams and bucket (3 on a 3-node cluster) "
            "[env SAGA_STREAM_REPLICAS].",
            "SAGA_STREAM_REPLICAS",
            click.IntRange(1, 5),
        ),
    ] = 1
    storage: Annotated[
        Literal["file", "memory"],
        Option(
            "--storage",
            "Storage of the engine's streams and bucket [env SAGA_STREAM_STORAGE].",
            "SAGA_STREAM_STORAGE",
            click.Choice(["file", "memory"]),
        ),
    ] = "file"
    finished_ttl: Annotated[
        str,
        BeforeValidator(_retention),
        Option(
            "--finished-ttl",
            "How long a completed or compensated instance is kept after it ended (7d, 12h…), "
            "or 'never' to keep it for ever [env SAGA_FINISHED_TTL].",
            "SAGA_FINISHED_TTL",
        ),
    ] = "7d"
    partitions: Annotated[
        int,
        Field(ge=0, le=1024),
        Option(
            "--partitions",
            "Deal instances into this many partitions, each owned by one engine replica at a "
            "time; use the same number on every replica, e.g. 12 for up to 12 replicas. "
            "0: no partitioning [env SAGA_PARTITIONS].",
            "SAGA_PARTITIONS",
            click.IntRange(0, 1024),
        ),
    ] = 0
    nats: Annotated[
        str | None,
        Option(
            "--nats",
            "NATS URL(s), comma separated [env SAGA_NATS_URL].",
            "SAGA_NATS_URL",
            nats="url",
        ),
    ] = None
    user: Annotated[
        str | None,
        Option("--user", "User name [env SAGA_NATS_USER].", "SAGA_NATS_USER", nats="user"),
    ] = None
    password: Annotated[
        SecretStr | None,
        Option(
            "--password",
            "Password [env SAGA_NATS_PASSWORD].",
            "SAGA_NATS_PASSWORD",
            nats="password",
        ),
    ] = None
    token: Annotated[
        SecretStr | None,
        Option("--token", "Auth token [env SAGA_NATS_TOKEN].", "SAGA_NATS_TOKEN", nats="token"),
    ] = None
    nkey: Annotated[
        Path | None,
        Option(
            "--nkey",
            "NKey seed file [env SAGA_NATS_NKEY].",
            "SAGA_NATS_NKEY",
            _FILE,
            "nkey_seed_file",
        ),
    ] = None
    creds: Annotated[
        Path | None,
        Option(
            "--creds",
            "Credentials file [env SAGA_NATS_CREDS].",
            "SAGA_NATS_CREDS",
            _FILE,
            "creds_file",
        ),
    ] = None
    tls_ca: Annotated[
        Path | None,
        Option("--tls-ca", "CA bundle for TLS.", "SAGA_NATS_TLS_CA", _FILE, "tls_ca_file"),
    ] = None
    tls_cert: Annotated[
        Path | None,
        Option(
            "--tls-cert",
            "Client certificate for mutual TLS.",
            "SAGA_NATS_TLS_CERT",
            _FILE,
            "tls_cert_file",
        ),
    ] = None
    tls_key: Annotated[
        Path | None,
        Option(
            "--tls-key", "Client key for mutual TLS.", "SAGA_NATS_TLS_KEY", _FILE, "tls_key_file"
        ),
    ] = None


def option_of(name: str) -> Option:
    """The command-line declaration of setting ``name``."""
    return next(m for m in RunConfig.model_fields[name].metadata if isinstance(m, Option))


ENV = {name: env for name in RunConfig.model_fields if (env := option_of(name).env)}
"""The environment variable of each setting (the same names the options read)."""

NATS_SETTINGS = tuple(name for name in RunConfig.model_fields if option_of(name).nats)
"""The settings of the NATS connection, which every command talking to NATS takes."""

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
