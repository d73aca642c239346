"""A JetStream cluster of embedded nats-servers on loopback: for tests, chaos runs and demos.

Three nodes (by default) route to each other; each keeps its own store, so a node
can be killed and brought back on the same port and store, as a real one would be.

    with LoopbackCluster(base_dir).start() as cluster:
        await wait_jetstream(cluster.urls, replicas=3)
        cluster.kill(1); cluster.restart(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from saga.nats.server import EmbeddedServer, free_port


@dataclass
class LoopbackCluster:
    """``size`` nodes named ``node-1``... with JetStream; ``urls`` is what clients get."""

    base_dir: Path
    size: int = 3
    name: str = "saga-chaos"
    sync_interval: str | None = None
    nodes: list[EmbeddedServer] = field(default_factory=list)

    @property
    def urls(self) -> str:
        """All client URLs, comma separated (the form ``NatsSettings.url`` and ``--nats`` take)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 15.0) -> LoopbackCluster:
        routes_ports = [free_port() for _ in range(self.size)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in routes_ports)
        self.nodes = []
        for i, port in enumerate(routes_ports, start=1):
            args = [
                "--server_name",
                f"node-{i}",
                "--cluster_name",
                self.name,
                "--cluster",
                f"nats://127.0.0.1:{port}",
                "--routes",
                routes,
            ]
            self.nodes.append(
                EmbeddedServer(
                    store_dir=self.base_dir / f"node-{i}",
                    sync_interval=self.sync_interval,
                    extra_args=args,
                )
            )
        for node in self.nodes:
            node.start(timeout)
        return self

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based); its port and store are kept for :meth:`restart`."""
        self.nodes[index].stop(kill=True)

    def restart(self, index: int, timeout: float = 15.0) -> None:
        self.nodes[index].start(timeout)

    def index_of(self, server_name: str) -> int:
        """0-based index of ``node-N``."""
        return int(server_name.rsplit("-", 1)[1]) - 1

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


async def wait_jetstream(urls: str, replicas: int = 1, timeout: float = 30.0) -> None:
    """Return once a stream with ``replicas`` replicas can be created (a meta leader exists and
    enough peers are current); raise ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    name = f"PROBE_{uuid.uuid4().hex[:8]}"
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(urls.split(","), connect_timeout=2, max_reconnect_attempts=1)
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
            continue
        try:
            js = nc.jetstream(timeout=5)
            config = StreamConfig(
                name=name,
                subjects=[f"probe.{name}"],
                num_replicas=replicas,
                storage=StorageType.MEMORY,
            )
            await js.add_stream(config)
            await js.delete_stream(name)
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
    raise TimeoutError(f"JetStream (replicas {replicas}) not ready on {urls}: {last!r}")
