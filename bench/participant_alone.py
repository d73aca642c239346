"""One SDK participant alone: its CPU per command, away from the engine and the other services.

    python bench/participant_alone.py [--commands N] [--inflight K] [--rounds R] [--json]
                                      [--code CHECKOUT ...]

Starts a nats-server (temporary store, loopback) with the events stream, then, each round,
one participant process per ``--code`` checkout (up to three), all at once, each running
another app of ``bench.participant`` (they rotate between rounds), and sends each step
commands as the engine would, ``K`` in flight, until ``N`` replies came back; all are driven
at the same time, so that the load of a shared machine falls on every checkout alike.
Reported per process: CPU per command (µs, user and system, from ``/proc``), read and
write system calls per command, commands per second. Every command is a first delivery of
a first attempt with a fresh saga id, the engine flow's case.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bench.measure import order
from bench.procs import CLOCK_TICKS, Processes
from bench.stacks import OTEL_OFF, ROOT, child_env, wait_consumers
from saga.nats.acks import Acks
from saga.nats.server import EmbeddedServer
from saga.protocol import (
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENTS_STREAM,
    HEADER_ATTEMPT,
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    KIND_STEP,
)

SERVICES = {
    "inventory": ("bench-inventory", "bench.inventory.reserve", "bench.inventory.reserved"),
    "payment": ("bench-payment", "bench.payment.charge", "bench.payment.charged"),
    "shipping": ("bench-shipping", "bench.shipping.schedule", "bench.shipping.scheduled"),
}
"""``bench.participant`` app -> (its durable, the command subject, the success subject)."""
APPS = list(SERVICES)
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


async def drive(url: str, service: str, count: int, inflight: int, tag: str) -> float:
    """Send ``count`` commands, ``inflight`` at a time; seconds until the last reply."""
    _, command, reply = SERVICES[service]
    nc = await nats.connect(url)
    acks = Acks(nc)
    done = 0
    finished = asyncio.get_running_loop().create_future()
    window = asyncio.Semaphore(inflight)

    async def replied(msg: Msg) -> None:
        nonlocal done
        done += 1
        window.release()
        if done == count and not finished.done():
            finished.set_result(None)

    await nc.subscribe(reply, cb=replied)
    started = time.monotonic()
    pending = []
    for i in range(count):
        await window.acquire()
        saga_id = f"{tag}-{i}"
        headers = {
            HEADER_SAGA_ID: saga_id,
            HEADER_SAGA_NAME: "bench-order",
            HEADER_STEP: service,
            HEADER_KIND: KIND_STEP,
            HEADER_ATTEMPT: "1",
            HEADER_MSG_ID: f"{saga_id}:{service}",
        }
        pending.append(await acks.send(command, order(saga_id, False), headers))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await asyncio.wait_for(finished, 120)
    elapsed = time.monotonic() - started
    await nc.close()
    return elapsed


@dataclass(frozen=True)
class Run:
    """One measured run of one participant process, per command."""

    service: str
    cpu_us: float
    user_us: float
    system_us: float
    reads: float
    """Read system calls (``/proc/PID/io``)."""
    writes: float
    per_s: float


async def one_round(
    procs: Processes,
    url: str,
    codes: list[Path],
    services: list[str],
    count: int,
    inflight: int,
    warmup: int,
    profile: Path | None = None,
) -> list[Run]:
    """Start a participant from each checkout (``codes[i]`` runs app ``services[i]``), all at
    once, warm them up, measure ``count`` commands each, driven at the same time, stop them."""
    children = []
    for code, service in zip(codes, services, strict=True):
        env = child_env({**OTEL_OFF, "SAGA_LOG_LEVEL": "WARNING"})
        env["PYTHONPATH"] = str(code)
        procs.cwd = code  # ``python -m`` puts the working directory first on the path
        args = ["-m", "saga", "participant", f"bench.participant:{service}", "--nats", url]
        children.append(procs.start(f"{service}-{uuid.uuid4().hex[:6]}", "participants", args, env))
    pids = [child.process.pid for child in children]
    try:
        nc = await nats.connect(url)
        names = [SERVICES[service][0] for service in services]
        await wait_consumers(nc.jetstream(), EVENTS_STREAM, names, procs)
        await nc.close()
        tag = uuid.uuid4().hex[:8]
        await asyncio.gather(*(drive(url, s, warmup, inflight, f"w{tag}") for s in services))
        spy = None
        if profile is not None:
            args = ["record", "--pid", str(pids[0]), "--rate", "500", "--format", "raw"]
            spy = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
                [PY_SPY, *args, "--output", str(profile)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        before = [counters(pid) for pid in pids]
        elapsed = await asyncio.gather(
            *(drive(url, s, count, inflight, f"m{tag}") for s in services)
        )
        after = [counters(pid) for pid in pids]
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    finally:
        procs.stop([child.name for child in children])
    runs = []
    for start, end, seconds, service in zip(before, after, elapsed, services, strict=True):
        user, system, reads, writes = ((a - b) / count for a, b in zip(end, start, strict=True))
        runs.append(Run(service, user + system, user, system, reads, writes, count / seconds))
    return runs


def counters(pid: int) -> tuple[float, float, int, int]:
    """User and system CPU (µs), read and write system calls of the process so far."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    user, system = (int(stat[i]) / CLOCK_TICKS * 1e6 for i in (11, 12))
    return user, system, int(io["syscr"]), int(io["syscw"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, action="append", help="checkout(s) to compare")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="py-spy's raw (collapsed) stacks of the measured part here"
    )
    args = parser.parse_args()
    codes: list[Path] = [c.resolve() for c in (args.code or [ROOT])]
    if len(codes) > len(SERVICES):
        parser.error(f"at most {len(SERVICES)} checkouts (one app each)")
    results: dict[str, list[Run]] = {str(c): [] for c in codes}
    with tempfile.TemporaryDirectory(prefix="participant-alone-") as logs:
        procs = Processes(Path(logs), ROOT)
        server = EmbeddedServer().start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(name=EVENTS_STREAM, subjects=["bench.>"], duplicate_window=120)
            )
            await js.add_stream(StreamConfig(name=DLQ_STREAM, subjects=[f"{DLQ_PREFIX}.>"]))
            await nc.close()
            for round_ in range(args.rounds):
                # the apps rotate over the checkouts: each runs every app in turn
                services = [APPS[(i + round_) % len(APPS)] for i in range(len(codes))]
                runs = await one_round(
                    procs,
                    server.url,
                    codes,
                    services,
                    args.commands,
                    args.inflight,
                    args.warmup,
                    args.profile,
                )
                for code, run in zip(codes, runs, strict=True):
                    results[str(code)].append(run)
                    if not args.json:
                        print(
                            f"{code} ({run.service}): {run.cpu_us:6.1f} µs/command "
                            f"(user {run.user_us:.0f}, system {run.system_us:.0f})  "
                            f"{run.per_s:6.0f} commands/s  "
                            f"read/write calls {run.reads:.2f}/{run.writes:.2f} per command",
                            flush=True,
                        )
        finally:
            procs.stop()
            server.close()
    summary = {
        code: {
            "median_cpu_us_per_command": round(statistics.median(r.cpu_us for r in runs), 1),
            "runs": [
                {
                    k: v if isinstance(v, str) else round(v, 2)
                    for k, v in dataclasses.asdict(r).items()
                }
                for r in runs
            ],
        }
        for code, runs in results.items()
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for code, s in summary.items():
            print(f"{code}: median {s['median_cpu_us_per_command']} µs/command")


if __name__ == "__main__":
    asyncio.run(main())
