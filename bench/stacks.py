"""The two sets of processes under test, started and stopped the same way.

- raw: three baseline services (``python -m bench.raw SERVICE``), one process each;
- engine: ``python -m saga run`` (one process per replica) and three SDK
  participants (``python -m saga participant bench.participant:NAME``), one process each.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bench import raw
from bench.participant import APPS
from bench.procs import BenchError, Processes

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "bench" / "definitions"
EVENTS_STREAM = "SAGA_EVENTS"
ENGINE_CONSUMER = "saga-engine"
OTEL_OFF = {"OTEL_SDK_DISABLED": "true"}


def otel_on(endpoint: str) -> dict[str, str]:
    """The standard OpenTelemetry variables: export over OTLP/HTTP to ``endpoint`` (whatever
    else the processes export by default, such as metrics, goes there too)."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without SAGA_*/OTEL_* settings of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SAGA_"))}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def _exists(js: JetStreamContext, stream: str, consumer: str) -> bool:
    try:
        await js.consumer_info(stream, consumer)
    except NotFoundError:
        return False
    return True


async def wait_consumers(
    js: JetStreamContext, stream: str, names: list[str], procs: Processes, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        procs.check()
        try:
            if all([await _exists(js, stream, n) for n in names]):
                return
        except NotFoundError:
            pass  # the stream itself is not there yet
        if time.monotonic() > deadline:
            raise BenchError(f"consumers {names} on {stream} missing after {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def start_raw(js: JetStreamContext, procs: Processes, url: str) -> None:
    await raw.provision(js)
    for service in raw.SERVICES:
        procs.start(
            f"raw-{service}", "raw", ["-m", "bench.raw", service, "--nats", url], child_env({})
        )


class EngineStack:
    """Engine replica(s) and the three participants; restarted to change their environment."""

    def __init__(
        self, procs: Processes, js: JetStreamContext, url: str, replicas: int, partitions: int = 0
    ) -> None:
        self.procs = procs
        self.js = js
        self.url = url
        self.replicas = replicas
        self.partitions = partitions
        self.generation = 0
        self.names: list[str] = []

    async def start(self, otel: Mapping[str, str]) -> None:
        self.generation += 1
        # The admin HTTP API (newer engines) is off: replicas would share its port, and a
        # developer's own engine may hold the default one.
        env = child_env({"SAGA_LOG_LEVEL": "WARNING", "SAGA_ADMIN_ADDR": "off", **otel})
        engine = ["-m", "saga", "run", "--nats", self.url, "--definitions", str(DEFINITIONS)]
        engine += ["--log-level", "WARNING"]
        if self.partitions:
            engine += ["--partitions", str(self.partitions)]
        for replica in range(1, self.replicas + 1):
            name = f"engine-g{self.generation}-r{replica}"
            self.procs.start(name, "engine", engine, env)
            self.names.append(name)
            if replica == 1:  # the first one provisions; the others then find everything there
                await wait_consumers(self.js, EVENTS_STREAM, [ENGINE_CONSUMER], self.procs)
                if self.partitions:
                    parts = [f"{ENGINE_CONSUMER}-p{p}" for p in range(self.partitions)]
                    await wait_consumers(self.js, "SAGA_WORK", parts, self.procs)
        for service, app in APPS.items():
            name = f"{app.name}-g{self.generation}"
            args = ["-m", "saga", "participant", f"bench.participant:{service}", "--nats", self.url]
            self.procs.start(name, "participants", [*args, "--log-level", "WARNING"], env)
            self.names.append(name)
        await wait_consumers(self.js, EVENTS_STREAM, [a.name for a in APPS.values()], self.procs)

    def stop(self) -> None:
        self.procs.stop(self.names)
        self.names = []
