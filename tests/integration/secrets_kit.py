"""Throwaway credentials for security tests: TLS certificates, NKeys, and NATS JWTs.

Everything is generated in the test (``cryptography`` for X.509, ``nkeys`` for Ed25519
NKeys); nothing is stored in the repository. The JWTs follow the NATS JWT v2 layout:
``base64url(header).base64url(claims).base64url(ed25519 signature)``, header
``{"typ": "JWT", "alg": "ed25519-nkey"}``, each signed by its issuer's NKey
(operator -> account -> user).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# -- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    subject: str,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    usage: ExtendedKeyUsageOID | None,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("saga test CA", _name("saga test CA"), ca_key, ca_key, None, ca=True)
    paths = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, usage, who in (
        (paths.server_cert, paths.server_key, ExtendedKeyUsageOID.SERVER_AUTH, "nats-server"),
        (paths.client_cert, paths.client_key, ExtendedKeyUsageOID.CLIENT_AUTH, "saga-engine"),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(who, ca_cert.subject, ca_key, key, usage)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
    return paths


# -- NKeys and JWTs ------------------------------------------------------------------------


def new_nkey(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], issuer: nkeys.KeyPair) -> str:
    claims = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        **claims,
    }
    claims["jti"] = _b64(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest())
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass(frozen=True)
class Operator:
    """An operator, a system account and one application account with one user."""

    operator_jwt: str
    system_account: str
    accounts: dict[str, str]
    """Account public key -> account JWT (for the server's memory resolver)."""
    user_jwt: str
    user_seed: bytes

    def server_config(self) -> str:
        preload = ",\n".join(f"  {key}: {jwt}" for key, jwt in self.accounts.items())
        return (
            f"operator: {self.operator_jwt}\n"
            f"system_account: {self.system_account}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )

    def creds(self) -> str:
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.user_seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )


def make_operator() -> Operator:
    operator = new_nkey(nkeys.PREFIX_BYTE_OPERATOR)
    system = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    account = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_nkey(nkeys.PREFIX_BYTE_USER)
    op_pub = operator.public_key.decode()
    operator_jwt = encode_jwt(
        {"sub": op_pub, "name": "saga-test", "nats": {"type": "operator", "version": 2}},
        operator,
    )

    def account_jwt(key: nkeys.KeyPair, name: str, jetstream: bool) -> str:
        limits: dict[str, Any] = {**UNLIMITED, "imports": -1, "exports": -1, "conn": -1}
        limits.update({"wildcards": True, "leaf": -1})
        if jetstream:
            limits.update(JETSTREAM)
        return encode_jwt(
            {
                "sub": key.public_key.decode(),
                "name": name,
                "nats": {"limits": limits, "type": "account", "version": 2},
            },
            operator,
        )

    user_jwt = encode_jwt(
        {
            "sub": user.public_key.decode(),
            "name": "saga-engine",
            "nats": {"pub": {}, "sub": {}, **UNLIMITED, "type": "user", "version": 2},
        },
        account,
    )
    return Operator(
        operator_jwt=operator_jwt,
        system_account=system.public_key.decode(),
        accounts={
            system.public_key.decode(): account_jwt(system, "SYS", jetstream=False),
            account.public_key.decode(): account_jwt(account, "SAGA", jetstream=True),
        },
        user_jwt=user_jwt,
        user_seed=user.seed,
    )
