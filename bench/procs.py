"""Child processes the benchmark starts, always stopped again, and what /proc says about them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot go on: a process died, or sagas stopped completing."""


@dataclass
class Child:
    name: str
    role: str
    """``engine``, ``participants`` or ``raw``: whose CPU it counts towards."""
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Processes:
    """Python children, each in its own session (a Ctrl-C reaches only us, and we stop them)."""

    log_dir: Path
    cwd: Path
    children: dict[str, Child] = field(default_factory=dict)

    def start(self, name: str, role: str, args: list[str], env: Mapping[str, str]) -> Child:
        if name in self.children:
            raise BenchError(f"{name} is already running")
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.cwd,
                start_new_session=True,
            )
        child = Child(name, role, process, log)
        self.children[name] = child
        return child

    def check(self) -> None:
        """Raise if a child has exited on its own."""
        for child in self.children.values():
            code = child.process.poll()
            if code is not None:
                raise BenchError(f"{child.name} exited with {code}; see {child.log}")

    def pids(self, role: str) -> list[int]:
        return [c.process.pid for c in self.children.values() if c.role == role]

    def first(self, role: str) -> Child:
        return next(c for c in self.children.values() if c.role == role)

    def stop(self, names: Iterable[str] | None = None, timeout: float = 15.0) -> None:
        """SIGTERM (they drain), then SIGKILL whatever is still there after ``timeout``."""
        chosen = [self.children.pop(n) for n in list(names or self.children) if n in self.children]
        for child in chosen:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in chosen:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident set size (``VmRSS``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")
