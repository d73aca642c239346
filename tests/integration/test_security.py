"""Every way to authenticate to NATS works against a server configured for it, a wrong
credential is refused with a clear error, and no secret ever reaches a log or a message.

Each mode gets its own nats-server from a config file (``EmbeddedServer(extra_args=["-c",
...])``); certificates, NKeys and JWTs are generated here (``tests/integration/secrets_kit.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nkeys
import pytest
from pydantic import SecretStr

from saga.client import find_instance, instance_store
from saga.definition import parse_definition
from saga.engine import Engine
from saga.errors import ConnectionFailed
from saga.nats.connection import AUTH_ENV, NatsSettings, connect, settings_from_env
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from tests.integration.secrets_kit import Pki, make_operator, make_pki, new_nkey
from tests.support import wait_for

PASSWORD = "pw-Secret-4f1c9"
TOKEN = "tok-Secret-9b27e"
SAGA = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved, timeout: 30s}
"""
)


@dataclass
class Mode:
    """A server configured for one way of authenticating, and the client settings for it."""

    server: EmbeddedServer
    good: NatsSettings
    bad: NatsSettings
    secrets: list[str] = field(default_factory=list)
    """Text that must never appear in a log line or an error message."""
    refusal: str = "Authorization Violation"


def start(tmp_path: Path, config: str) -> EmbeddedServer:
    conf = tmp_path / "server.conf"
    conf.write_text(config)
    return EmbeddedServer(store_dir=tmp_path / "nats", extra_args=["-c", str(conf)]).start()


def quick(**fields: object) -> NatsSettings:
    """Settings that give up fast: a refused credential fails the test in seconds."""
    return NatsSettings(initial_connect_timeout=1.5, max_reconnect_attempts=1, **fields)  # type: ignore[arg-type]


def user_password(tmp_path: Path) -> Mode:
    server = start(
        tmp_path,
        f'authorization {{ users = [ {{user: saga, password: "{PASSWORD}"}} ] }}\n',
    )
    return Mode(
        server,
        NatsSettings(url=server.url, user="saga", password=SecretStr(PASSWORD)),
        quick(url=server.url, user="saga", password=SecretStr(PASSWORD + "x")),
        [PASSWORD],
    )


def token(tmp_path: Path) -> Mode:
    server = start(tmp_path, f'authorization {{ token: "{TOKEN}" }}\n')
    return Mode(
        server,
        NatsSettings(url=server.url, token=SecretStr(TOKEN)),
        quick(url=server.url, token=SecretStr("tok-wrong")),
        [TOKEN, "tok-wrong"],
    )


def credentials_in_the_url(tmp_path: Path) -> Mode:
    """``nats://user:password@host``: allowed by nats-py, and masked in our errors."""
    server = start(
        tmp_path,
        f'authorization {{ users = [ {{user: saga, password: "{PASSWORD}"}} ] }}\n',
    )
    url = f"nats://saga:{PASSWORD}@127.0.0.1:{server.port}"
    return Mode(
        server,
        NatsSettings(url=url),
        quick(url=url.replace(PASSWORD, PASSWORD + "x")),
        [PASSWORD],
    )


def nkey(tmp_path: Path) -> Mode:
    user, stranger = new_nkey(nkeys.PREFIX_BYTE_USER), new_nkey(nkeys.PREFIX_BYTE_USER)
    server = start(
        tmp_path, f"authorization {{ users = [ {{nkey: {user.public_key.decode()}}} ] }}\n"
    )
    seed, wrong = tmp_path / "user.nk", tmp_path / "stranger.nk"
    seed.write_bytes(user.seed)
    wrong.write_bytes(stranger.seed)
    return Mode(
        server,
        NatsSettings(url=server.url, nkey_seed_file=seed),
        quick(url=server.url, nkey_seed_file=wrong),
        [user.seed.decode(), stranger.seed.decode()],
    )


def creds(tmp_path: Path) -> Mode:
    operator, other = make_operator(), make_operator()
    server = start(tmp_path, operator.server_config())
    good, bad = tmp_path / "engine.creds", tmp_path / "other.creds"
    good.write_text(operator.creds())
    bad.write_text(other.creds())  # signed by an operator this server does not trust
    return Mode(
        server,
        NatsSettings(url=server.url, creds_file=good),
        quick(url=server.url, creds_file=bad),
        [operator.user_seed.decode(), other.user_seed.decode()],
    )


def tls_config(pki: Pki, verify: bool) -> str:
    return (
        "tls {\n"
        f'  cert_file: "{pki.server_cert}"\n'
        f'  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca}"\n'
        f"  verify: {'true' if verify else 'false'}\n"
        "  timeout: 2\n"
        "}\n"
    )


def tls(tmp_path: Path) -> Mode:
    pki = make_pki(tmp_path / "pki")
    server = start(tmp_path, tls_config(pki, verify=False))
    url = f"tls://127.0.0.1:{server.port}"
    return Mode(
        server,
        NatsSettings(url=url, tls_ca_file=pki.ca),
        quick(url=url),  # no CA: the test CA is not trusted
        [pki.server_key.read_text()],
        refusal="CERTIFICATE_VERIFY_FAILED",
    )


def mutual_tls(tmp_path: Path) -> Mode:
    pki = make_pki(tmp_path / "pki")
    server = start(tmp_path, tls_config(pki, verify=True))
    url = f"tls://127.0.0.1:{server.port}"
    return Mode(
        server,
        NatsSettings(
            url=url, tls_ca_file=pki.ca, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key
        ),
        quick(url=url, tls_ca_file=pki.ca),  # no client certificate
        [pki.client_key.read_text(), pki.server_key.read_text()],
        refusal="cannot connect",
    )


MODES: dict[str, Callable[[Path], Mode]] = {
    "user-password": user_password,
    "token": token,
    "credentials-in-url": credentials_in_the_url,
    "nkey": nkey,
    "creds-jwt": creds,
    "tls": tls,
    "mutual-tls": mutual_tls,
}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mode]:
    made = MODES[request.param](tmp_path)
    yield made
    made.server.close()


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for line in secret.strip().splitlines():
            if len(line.strip()) >= 8 and "-----" not in line:
                assert line.strip() not in text, "a secret reached a log or an error message"


async def test_the_engine_runs_with_each_auth_mode(
    mode: Mode, every_log: pytest.LogCaptureFixture
) -> None:
    nc = await connect(mode.good)
    engine = Engine(nc, {"shop": SAGA})
    try:
        await engine.start()  # JetStream: streams, consumers, KV bucket
        js = nc.jetstream()
        await js.publish("shop.ordered", json.dumps({"id": "secure-1"}).encode())
        store = await instance_store(js, Topology())

        async def started() -> bool:
            return await find_instance(store, "secure-1", "shop") is not None

        await wait_for(started, message="the saga to start over this connection")
    finally:
        await engine.stop()
        await nc.drain()
    assert_no_secret(every_log.text, mode.secrets)
    assert_no_secret(repr(mode.good) + str(mode.good), mode.secrets[:1])


async def test_a_wrong_credential_is_refused_without_revealing_it(
    mode: Mode, every_log: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConnectionFailed) as refused:
        await connect(mode.bad)
    message = str(refused.value)
    assert mode.refusal in message or mode.refusal in every_log.text
    assert "cannot connect to" in message
    assert_no_secret(message, mode.secrets)
    assert_no_secret(every_log.text, mode.secrets)


async def test_a_participant_authenticates_from_the_engines_variables(mode: Mode) -> None:
    """Services read the same SAGA_NATS_* variables as ``saga run``, so one secret serves all."""
    good = mode.good
    environ = {"SAGA_NATS_URL": good.url}
    for name, variable in AUTH_ENV.items():
        value = getattr(good, name)
        if value is not None:
            environ[variable] = (
                value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            )
    settings = settings_from_env(None, "inventory", environ)
    assert settings.model_dump(exclude={"name"}) == good.model_dump(exclude={"name"})
    nc = await connect(settings)
    await nc.close()
