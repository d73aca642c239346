"""Where an HTTP server listens: the engine's admin API and a participant's probes.

Its own module so a participant can parse ``--health`` without importing the admin
API (and with it aiohttp's server, the console and the engine).
"""

from __future__ import annotations

from dataclasses import dataclass

from saga.errors import ConfigError


@dataclass(frozen=True)
class AdminSettings:
    host: str = "127.0.0.1"
    port: int = 7480
    token: str | None = None
    """Bearer token; ``None`` leaves the API open (it listens on loopback by default)."""


def parse_address(text: str) -> AdminSettings | None:
    """``HOST:PORT`` (``:PORT`` means loopback), or ``off``; ``ConfigError`` otherwise."""
    if text.strip().lower() in ("off", "none", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"admin address {text!r}: expected HOST:PORT, :PORT or off")
    return AdminSettings(host=host or "127.0.0.1", port=int(port))
