"""How to reach NATS: URL and authentication, as one frozen settings model."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import NoServersError
from pydantic import BaseModel, ConfigDict, SecretStr

from saga.errors import ConnectionFailed

log = logging.getLogger("saga.nats")
_USERINFO = re.compile(r"^(\s*[a-z]+://)[^@/]*@", re.IGNORECASE)


class NatsSettings(BaseModel):
    """Connection settings; every secret is a ``SecretStr`` so it never reaches a log."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    url: str = "nats://127.0.0.1:4222"
    """One URL or several separated by commas."""
    name: str = "saga"
    """Client name shown in the server's connection list."""
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    """File holding an NKey seed (``SU...``)."""
    creds_file: Path | None = None
    """A ``.creds`` file (JWT + NKey seed)."""
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    """Client certificate (with ``tls_key_file``) for mutual TLS."""
    tls_key_file: Path | None = None
    connect_timeout: float = 5.0
    initial_connect_timeout: float = 15.0
    """Seconds to keep trying the first connection before giving up with an error."""
    max_reconnect_attempts: int = -1
    """-1 (a service) keeps trying for ever; the CLI gives up after a few attempts."""

    def __repr_args__(self) -> Any:
        """``repr``/``str`` mask credentials written into the URL (``nats://u:p@host``)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and isinstance(value, str) else value

    def options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`nats.connect`."""
        opts: dict[str, Any] = {
            "servers": [u.strip() for u in self.url.split(",") if u.strip()],
            "name": self.name,
            "connect_timeout": self.connect_timeout,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "reconnect_time_wait": 0.5,
        }
        if self.user is not None:
            opts["user"] = self.user
            opts["password"] = self.password.get_secret_value() if self.password else None
        if self.token is not None:
            opts["token"] = self.token.get_secret_value()
        if self.nkey_seed_file is not None:
            opts["nkeys_seed"] = str(self.nkey_seed_file)
        if self.creds_file is not None:
            opts["user_credentials"] = str(self.creds_file)
        tls = self.tls_context()
        if tls is not None:
            opts["tls"] = tls
        return opts

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca_file or self.tls_cert_file or self.url.startswith("tls://")):
            return None
        context = ssl.create_default_context(
            cafile=str(self.tls_ca_file) if self.tls_ca_file else None
        )
        if self.tls_cert_file is not None:
            key = str(self.tls_key_file) if self.tls_key_file else None
            context.load_cert_chain(str(self.tls_cert_file), key)
        return context


URL_ENV = "SAGA_NATS_URL"
AUTH_ENV = {
    "user": "SAGA_NATS_USER",
    "password": "SAGA_NATS_PASSWORD",
    "token": "SAGA_NATS_TOKEN",
    "nkey_seed_file": "SAGA_NATS_NKEY",
    "creds_file": "SAGA_NATS_CREDS",
    "tls_ca_file": "SAGA_NATS_TLS_CA",
    "tls_cert_file": "SAGA_NATS_TLS_CERT",
    "tls_key_file": "SAGA_NATS_TLS_KEY",
}
"""The variables ``saga run`` reads for each field; services read the same ones."""


def settings_from_env(
    url: str | None, name: str, environ: Mapping[str, str] = os.environ
) -> NatsSettings:
    """``url`` (else ``$SAGA_NATS_URL``, else the local default) with the authentication the
    ``SAGA_NATS_*`` variables give: how a participant or a script connects like the engine."""
    fields = {field: environ[var] for field, var in AUTH_ENV.items() if environ.get(var)}
    return NatsSettings(url=url or environ.get(URL_ENV) or NatsSettings().url, name=name, **fields)


async def connect(settings: NatsSettings) -> Client:
    """Connect, or raise :class:`ConnectionFailed` naming the last error (bad credentials,
    refused connection) once ``initial_connect_timeout`` has passed: never hang at start-up."""
    errors: list[Exception] = []

    async def log_error(error: Exception) -> None:
        errors.append(error)
        log.warning("nats: %s", error or type(error).__name__)

    try:
        return await asyncio.wait_for(
            nats.connect(error_cb=log_error, **settings.options()),
            settings.initial_connect_timeout,
        )
    except (TimeoutError, NoServersError, OSError) as exc:
        reason = _most_telling(errors) if errors else exc
        raise ConnectionFailed(
            f"cannot connect to {redact_url(settings.url)}: {reason or type(reason).__name__}"
        ) from None


def _most_telling(errors: list[Exception]) -> Exception:
    """A refused credential, if any attempt was told so, over the last error: the server
    closes the socket right after its ``-ERR``, so an attempt may end in a bare reset."""
    for error in reversed(errors):
        text = str(error).lower()
        if "authorization" in text or "authentication" in text:
            return error
    return errors[-1]


def redact_url(url: str) -> str:
    """The URL(s) with any ``user:password@`` or ``token@`` part masked, for messages and logs."""
    return ",".join(_USERINFO.sub(r"\1***@", part) for part in url.split(","))
