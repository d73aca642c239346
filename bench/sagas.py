"""Saga engine vs a raw JetStream baseline, measured in the same run.

    python bench/sagas.py [--json] [--sagas N] [--inflight K] [--solo N] [--long]

Starts its own nats-server (embedded, temporary file store, loopback), the raw
baseline's three services and the engine with three SDK participants, each in
a process of its own, then measures, alternating raw and engine runs so that
drift on a shared machine cancels out:

- throughput: N sagas with K in flight, raw vs engine (sagas/s, p50/p99 latency
  from trigger publish to completion event);
- solo latency: one saga at a time, raw, engine and observed alternating;
- observed steps (``bench-observed``, pure choreography: each service reacts to the
  previous step's event and the engine only watches): throughput, solo latency and CPU
  per saga beside the driven engine flow's;
- compensation: engine sagas whose last step fails (two undos each);
- tracing cost: the engine and participants restarted with OpenTelemetry
  exporting to a local OTLP/HTTP receiver, vs tracing off (before and after);
- memory: the engine's RSS after warm-up and after the runs (``--long``: after
  100,000 more sagas).

Everything it started is stopped on exit, Ctrl-C and errors included. See
``docs/performance.md`` for figures and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats
from nats.aio.client import Client

from bench.measure import ENGINE, OBSERVED, RAW, Driver, Flow, RunStats, percentile
from bench.otlp import OtlpReceiver
from bench.procs import BenchError, Processes, cpu_seconds, rss_mib
from bench.stacks import EVENTS_STREAM, OTEL_OFF, ROOT, EngineStack, otel_on, start_raw
from saga.errors import ServerNotFoundError
from saga.nats.server import EmbeddedServer, find_server_binary, free_port

LONG_SAGAS = 100_000
REQUIRED_KEYS = (
    "raw_sagas_per_s",
    "engine_sagas_per_s",
    "throughput_ratio",
    "raw_solo_p50_ms",
    "engine_solo_p50_ms",
    "solo_latency_ratio",
    "compensation_sagas_per_s",
    "tracing_ratio",
    "rss_growth_pct",
    "cpu_ratio",
    "observed_throughput_ratio",
    "observed_solo_latency_ratio",
    "observed_cpu_ratio",
)
"""Keys ``--json`` always reports with a number (the smoke test checks them)."""


@dataclass(frozen=True)
class Options:
    sagas: int
    inflight: int
    solo: int
    warmup: int
    long: bool
    replicas: int
    partitions: int
    stall: float
    as_json: bool
    profile: Path | None = None
    profile_participant: Path | None = None


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python bench/sagas.py",
        description="Throughput and latency of the saga engine beside a raw JetStream baseline.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--sagas", type=int, default=5000, help="sagas per throughput run")
    parser.add_argument("--inflight", type=int, default=200, help="sagas in flight at once")
    parser.add_argument("--solo", type=int, default=200, help="one-at-a-time sagas per flow")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up sagas (default N/10)")
    parser.add_argument("--long", action="store_true", help=f"{LONG_SAGAS:,} more for memory")
    parser.add_argument("--replicas", type=int, default=1, help="engine processes (default 1)")
    parser.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="run the engine partitioned (saga run --partitions P); 0: not partitioned",
    )
    parser.add_argument(
        "--stall", type=float, default=60.0, help="give up after this many seconds without progress"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="py-spy the engine during the first engine run and the traced run "
        "(FILE.svg: flame graph, FILE.txt: collapsed stacks, FILE.json: speedscope)",
    )
    parser.add_argument(
        "--profile-participant",
        type=Path,
        metavar="FILE",
        help="py-spy the first participant (inventory) during the first engine run, and "
        "during the traced run into FILE-traced (formats as for --profile)",
    )
    args = parser.parse_args(argv)
    for name in ("sagas", "inflight", "solo", "replicas"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    warmup = args.warmup if args.warmup is not None else max(20, args.sagas // 10)
    return Options(
        sagas=args.sagas,
        inflight=args.inflight,
        solo=args.solo,
        warmup=max(1, warmup),
        long=args.long,
        replicas=args.replicas,
        partitions=max(0, args.partitions),
        stall=args.stall,
        as_json=args.json,
        profile=args.profile,
        profile_participant=args.profile_participant,
    )


def say(opts: Options, text: str) -> None:
    """Progress on stderr (never mixed into the JSON on stdout)."""
    if not opts.as_json:
        print(text, file=sys.stderr, flush=True)


def server_version() -> str:
    out = subprocess.run(
        [find_server_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return out.stdout.strip().rpartition(" ")[2] or "unknown"


def source_revision() -> str:
    """Where the engine under test comes from: ``<path> @ <commit>[+dirty]``."""
    import saga

    where = Path(saga.__file__).resolve().parent.parent
    git = ["git", "-C", str(where)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return f"{where} (not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "saga"], capture_output=True, text=True, check=False
    )
    return f"{where} @ {head.stdout.strip()}{'+dirty' if dirty.stdout.strip() else ''}"


class Run:
    """One benchmark run: the server, the children and the measurements taken so far."""

    def __init__(self, opts: Options, work: Path) -> None:
        self.opts = opts
        self.monitor_port = free_port()
        """The server's HTTP monitoring port (loopback, as its client port): ``/varz`` counts
        every message in and out, pulls, acks and pub acks included."""
        self.server = EmbeddedServer(
            store_dir=work / "nats", extra_args=["-m", str(self.monitor_port)]
        )
        self.procs = Processes(log_dir=work, cwd=ROOT)
        self.receiver = OtlpReceiver()
        self.nc: Client | None = None
        self.stack: EngineStack | None = None
        self.stats: dict[str, list[RunStats]] = {}
        self.rss_sagas_between = 0
        self.traced_sagas = 0
        self.server_ops: dict[str, list[dict[str, float]]] = {}
        self.counting_requests = 0
        """JetStream API requests made by :meth:`server_counters` itself so far."""

    def cpu(self) -> dict[str, float]:
        assert self.server.process is not None
        roles = {"server": [self.server.process.pid], "driver": [os.getpid()]}
        roles |= {r: self.procs.pids(r) for r in ("engine", "participants", "raw")}
        return {role: sum(cpu_seconds(p) for p in pids) for role, pids in roles.items()}

    def check(self) -> None:
        if self.server.process is None or self.server.process.poll() is not None:
            raise BenchError("nats-server is gone")
        self.procs.check()

    async def measure(
        self,
        driver: Driver,
        key: str,
        flow: Flow,
        count: int,
        tag: str,
        fail: bool = False,
        profile: Path | None = None,
        profile_participant: Path | None = None,
    ) -> RunStats:
        spies = [self.spy(profile, "engine") if profile else None]
        spies.append(self.spy(profile_participant, "participants") if profile_participant else None)
        before = await self.server_counters()
        try:
            stats = await driver.run(flow, count, self.opts.inflight, tag, fail)
        finally:
            for spy in spies:
                if spy is not None:
                    stop_spy(spy)
        after = await self.server_counters()
        self.server_ops.setdefault(key, []).append(
            {k: (after[k] - before.get(k, 0)) / count for k in after}
        )
        self.stats.setdefault(key, []).append(stats)
        extra = f", unexpected outcomes {stats.unexpected}" if stats.unexpected else ""
        say(
            self.opts,
            f"  {key:<16} {stats.sagas:>7} sagas  {stats.per_s:8.0f}/s  "
            f"p50 {stats.p50_ms:7.1f} ms  p99 {stats.p99_ms:7.1f} ms{extra}",
        )
        return stats

    async def server_counters(self) -> dict[str, int]:
        """What the server did so far: per stream, messages ever stored (last sequence) and
        removed (stored minus held: expired TTLs, tombstones, replaced per-subject entries);
        the events stream's status events apart; deliveries to and acks from every consumer;
        JetStream API requests."""
        assert self.nc is not None
        js = self.nc.jetstream()
        counters: dict[str, int] = {}
        api_before = (await js.account_info()).api.total
        for info in await js.streams_info():
            name, state = info.config.name, info.state
            counters[f"stored {name}"] = state.last_seq
            counters[f"removed {name}"] = state.last_seq - state.first_seq + 1 - state.messages
            if name == EVENTS_STREAM:
                status = await js.stream_info(name, subjects_filter="saga.status.>")
                counters[f"stored {name} status"] = sum((status.state.subjects or {}).values())
            for consumer in await js.consumers_info(name):
                counters["consumer deliveries"] = (
                    counters.get("consumer deliveries", 0) + consumer.delivered.consumer_seq
                )
                counters["consumer acks (floor)"] = (
                    counters.get("consumer acks (floor)", 0) + consumer.ack_floor.consumer_seq
                )
        varz = await asyncio.to_thread(self.varz)
        counters["server messages in"] = varz["in_msgs"]
        counters["server messages out"] = varz["out_msgs"]
        api_after = (await js.account_info()).api.total
        # The requests of these reads themselves are not the flows' work: left out.
        counters["JetStream API requests"] = api_before - self.counting_requests
        self.counting_requests += api_after - api_before + 1
        return counters

    def varz(self) -> dict[str, Any]:
        url = f"http://{self.server.host}:{self.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=10) as answer:
            found: dict[str, Any] = json.load(answer)
        return found

    def spy(self, out: Path, role: str) -> subprocess.Popen[bytes] | None:
        """py-spy on the first process of ``role`` until :func:`stop_spy`; None without py-spy."""
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(binary).exists():
            say(self.opts, "  (py-spy not found: pip install py-spy; no profile taken)")
            return None
        formats = {".svg": "flamegraph", ".txt": "raw", ".json": "speedscope"}
        pid = self.procs.first(role).process.pid
        args = [binary, "record", "--pid", str(pid), "--rate", "100", "--output", str(out)]
        args += ["--format", formats.get(out.suffix, "flamegraph")]
        log = (self.procs.log_dir / f"py-spy-{role}.log").open("ab")
        with log:
            return subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)

    async def restart_engine(self, driver: Driver, otel: dict[str, str], tag: str) -> None:
        assert self.stack is not None
        self.stack.stop()
        await self.stack.start(otel)
        await driver.run(ENGINE, 1, 1, f"probe-{tag}")
        await driver.run(ENGINE, self.opts.warmup, self.opts.inflight, f"warm-{tag}")

    async def execute(self) -> dict[str, Any]:
        opts = self.opts
        await asyncio.to_thread(self.server.start)
        await self.receiver.start()
        self.nc = await nats.connect(self.server.url, name="bench-driver")
        js = self.nc.jetstream()
        driver = Driver(self.nc, opts.stall, self.check, self.cpu)
        await driver.start()
        say(opts, f"nats-server {self.server.url}; logs in {self.procs.log_dir}")

        await start_raw(js, self.procs, self.server.url)
        self.stack = EngineStack(self.procs, js, self.server.url, opts.replicas, opts.partitions)
        await self.stack.start(OTEL_OFF)
        await driver.run(RAW, 1, 1, "probe-raw")
        await driver.run(ENGINE, 1, 1, "probe-engine")
        await driver.run(OBSERVED, 1, 1, "probe-observed")
        say(opts, f"warm-up: {opts.warmup} sagas each")
        await driver.run(RAW, opts.warmup, opts.inflight, "warm-raw")
        await driver.run(ENGINE, opts.warmup, opts.inflight, "warm-engine")
        await driver.run(OBSERVED, opts.warmup, opts.inflight, "warm-observed")
        engine_pid = self.procs.first("engine").process.pid
        rss_warm = rss_mib(engine_pid)

        say(opts, f"solo latency: {opts.solo} sagas each, one at a time, alternating")
        solo = await driver.solo([RAW, ENGINE, OBSERVED], opts.solo, "solo")

        say(opts, f"throughput: {opts.sagas} sagas, {opts.inflight} in flight")
        await self.measure(driver, "raw", RAW, opts.sagas, "raw-1")
        engine_profile = profile_path(opts.profile, "engine")
        await self.measure(
            driver,
            "engine",
            ENGINE,
            opts.sagas,
            "engine-1",
            profile=engine_profile,
            profile_participant=opts.profile_participant,
        )
        await self.measure(driver, "observed", OBSERVED, opts.sagas, "observed-1")
        await self.measure(driver, "compensation", ENGINE, opts.sagas, "comp-1", fail=True)
        await self.measure(driver, "observed", OBSERVED, opts.sagas, "observed-2")
        await self.measure(driver, "engine", ENGINE, opts.sagas, "engine-2")
        await self.measure(driver, "raw", RAW, opts.sagas, "raw-2")
        if opts.long:
            say(opts, f"long run: {LONG_SAGAS:,} engine sagas")
            await self.measure(driver, "long", ENGINE, LONG_SAGAS, "long")
        rss_end = rss_mib(engine_pid)
        self.rss_sagas_between = 2 * opts.solo + 5 * opts.sagas + (LONG_SAGAS if opts.long else 0)

        say(opts, "tracing: engine and participants restarted with OTLP export on, then off")
        await self.restart_engine(driver, otel_on(self.receiver.endpoint), "on")
        self.traced_sagas = 1 + opts.warmup + opts.sagas
        traced_profile = profile_path(opts.profile, "traced")
        await self.measure(
            driver,
            "tracing_on",
            ENGINE,
            opts.sagas,
            "traced",
            profile=traced_profile,
            profile_participant=profile_path(opts.profile_participant, "traced"),
        )
        await self.restart_engine(driver, OTEL_OFF, "off")
        await self.measure(driver, "engine", ENGINE, opts.sagas, "engine-3")
        await self.measure(driver, "raw", RAW, opts.sagas, "raw-3")
        return self.results(solo, rss_warm, rss_end)

    def results(
        self, solo: dict[str, list[float]], rss_warm: float, rss_end: float
    ) -> dict[str, Any]:
        opts, stats = self.opts, self.stats
        spans = self.receiver.spans()

        def rate(key: str) -> float:
            return statistics.fmean([s.per_s for s in stats[key]])

        def pooled(key: str, field: str) -> float:
            return float(statistics.median(getattr(s, field) for s in stats[key]))

        def ratio(a: float, b: float) -> float:
            return round(a / b, 3) if b else 0.0

        raw_rate, engine_rate = rate("raw"), rate("engine")
        comp_rate, traced_rate = rate("compensation"), rate("tracing_on")
        # Tracing on is compared with the two engine runs on either side of it (ABA).
        untraced = statistics.fmean(s.per_s for s in stats["engine"][-2:])
        raw_solo, engine_solo = percentile(solo["raw"], 0.5), percentile(solo["engine"], 0.5)
        observed_rate, observed_solo = rate("observed"), percentile(solo["observed"], 0.5)
        result: dict[str, Any] = {
            "raw_sagas_per_s": round(raw_rate, 1),
            "engine_sagas_per_s": round(engine_rate, 1),
            "throughput_ratio": ratio(engine_rate, raw_rate),
            "raw_p50_ms": round(pooled("raw", "p50_ms"), 1),
            "raw_p99_ms": round(pooled("raw", "p99_ms"), 1),
            "engine_p50_ms": round(pooled("engine", "p50_ms"), 1),
            "engine_p99_ms": round(pooled("engine", "p99_ms"), 1),
            "raw_solo_p50_ms": round(raw_solo, 2),
            "raw_solo_p99_ms": round(percentile(solo["raw"], 0.99), 2),
            "engine_solo_p50_ms": round(engine_solo, 2),
            "engine_solo_p99_ms": round(percentile(solo["engine"], 0.99), 2),
            "solo_latency_ratio": ratio(engine_solo, raw_solo),
            "observed_sagas_per_s": round(observed_rate, 1),
            "observed_throughput_ratio": ratio(observed_rate, raw_rate),
            "observed_p50_ms": round(pooled("observed", "p50_ms"), 1),
            "observed_solo_p50_ms": round(observed_solo, 2),
            "observed_solo_p99_ms": round(percentile(solo["observed"], 0.99), 2),
            "observed_solo_latency_ratio": ratio(observed_solo, raw_solo),
            "compensation_sagas_per_s": round(comp_rate, 1),
            "compensation_p50_ms": round(pooled("compensation", "p50_ms"), 1),
            "compensation_p99_ms": round(pooled("compensation", "p99_ms"), 1),
            "compensation_ratio": ratio(comp_rate, raw_rate),
            "tracing_on_sagas_per_s": round(traced_rate, 1),
            "tracing_off_sagas_per_s": round(untraced, 1),
            "tracing_ratio": ratio(traced_rate, untraced),
            "otlp_requests": dict(self.receiver.posts),
            "otlp_bytes": dict(self.receiver.received),
            "otlp_spans": spans,
            "spans_per_saga": round(spans / self.traced_sagas, 1) if spans else None,
            "rss_warm_mib": round(rss_warm, 1),
            "rss_end_mib": round(rss_end, 1),
            "rss_growth_pct": round((rss_end - rss_warm) / rss_warm * 100, 1),
            "rss_sagas_between": self.rss_sagas_between,
            "long_sagas_per_s": round(rate("long"), 1) if "long" in stats else None,
            "long_sagas_per_s_by_tenth": stats["long"][0].tenths if "long" in stats else None,
            "cpu_us_per_saga": {
                key: _mean_cpu(stats[key])
                for key in ("raw", "engine", "observed", "compensation", "tracing_on")
            },
            "cpu_ratio": cpu_ratio(stats["engine"], stats["raw"]),
            "observed_cpu_ratio": cpu_ratio(stats["observed"], stats["raw"]),
            "cpu_cores_busy": {
                key: _mean_cores(stats[key])
                for key in ("raw", "engine", "observed", "compensation", "tracing_on")
            },
            "server_ops_per_saga": {
                key: {k: round(v, 2) for k, v in runs[0].items() if v}
                for key, runs in self.server_ops.items()
                if key in ("raw", "engine", "observed", "compensation")
            },
            "runs": {key: [round(s.per_s, 1) for s in runs] for key, runs in stats.items()},
            "unexpected_outcomes": {
                key: sum(sum(s.unexpected.values()) for s in runs) for key, runs in stats.items()
            },
            "settings": {
                "sagas": opts.sagas,
                "inflight": opts.inflight,
                "solo": opts.solo,
                "warmup": opts.warmup,
                "long": opts.long,
                "engine_replicas": opts.replicas,
                "engine_partitions": opts.partitions,
                "participant_processes": 3,
                "raw_service_processes": 3,
                "storage": "file, 1 replica",
                "server_version": server_version(),
                "python_version": platform.python_version(),
                "nats_py_version": version("nats-py"),
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "saga_source": source_revision(),
            },
        }
        result["targets_met"] = {
            "throughput_ratio >= 0.5": result["throughput_ratio"] >= 0.5,
            "solo_latency_ratio <= 2.0": result["solo_latency_ratio"] <= 2.0,
            "compensation_ratio >= 0.4": result["compensation_ratio"] >= 0.4,
            "tracing_ratio >= 0.7": result["tracing_ratio"] >= 0.7,
            "rss_growth_pct <= 10": result["rss_growth_pct"] <= 10,
            "cpu_ratio <= 2.8": 0 < result["cpu_ratio"] <= 2.8,
        }
        return result

    async def close(self) -> None:
        """Children first (they drain against a live server), then the server. Synchronous
        where it matters, so a second Ctrl-C cannot cut the clean-up short."""
        server_alive = self.server.process is not None and self.server.process.poll() is None
        self.procs.stop(timeout=15.0 if server_alive else 2.0)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        with contextlib.suppress(Exception):
            await self.receiver.stop()
        self.server.close()


def stop_spy(spy: subprocess.Popen[bytes]) -> None:
    """Interrupt py-spy (it then writes its output), or kill it if it does not end."""
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def profile_path(base: Path | None, suffix: str) -> Path | None:
    return base.with_name(f"{base.stem}-{suffix}{base.suffix}") if base else None


RAW_ROLES = ("driver", "server", "raw")
ENGINE_ROLES = ("driver", "server", "engine", "participants")


def cpu_ratio(engine: list[RunStats], raw: list[RunStats]) -> float:
    """Total CPU per completed engine saga (driver, server, engine, participants) over total
    CPU per raw saga (driver, server, raw services), from the runs of the same bench; the
    processes idle in the other flow's runs are left out of both."""

    def total(runs: list[RunStats], roles: tuple[str, ...]) -> float:
        return statistics.fmean(sum(r.cpu.get(role, 0.0) for role in roles) / r.sagas for r in runs)

    raw_total = total(raw, RAW_ROLES)
    return round(total(engine, ENGINE_ROLES) / raw_total, 2) if raw_total else 0.0


def _mean_cores(runs: list[RunStats]) -> dict[str, float]:
    per_run = [r.cores() for r in runs]
    return {role: round(statistics.fmean(p[role] for p in per_run), 2) for role in per_run[0]}


def _mean_cpu(runs: list[RunStats]) -> dict[str, float]:
    per_run = [r.cpu_us_per_saga() for r in runs]
    return {role: round(statistics.fmean(p[role] for p in per_run)) for role in per_run[0]}


def table(result: dict[str, Any]) -> str:
    r, cpu = result, result["cpu_us_per_saga"]
    obs = cpu.get("observed", {})
    rows: list[tuple[Any, ...]] = [
        (
            "throughput, sagas/s",
            r["raw_sagas_per_s"],
            r["engine_sagas_per_s"],
            r["throughput_ratio"],
            r["observed_sagas_per_s"],
            r["observed_throughput_ratio"],
        ),
        (
            "  p50 latency, ms",
            r["raw_p50_ms"],
            r["engine_p50_ms"],
            _ratio(r, "p50_ms"),
            r["observed_p50_ms"],
            "",
        ),
        ("  p99 latency, ms", r["raw_p99_ms"], r["engine_p99_ms"], _ratio(r, "p99_ms"), "", ""),
        (
            "solo p50, ms",
            r["raw_solo_p50_ms"],
            r["engine_solo_p50_ms"],
            r["solo_latency_ratio"],
            r["observed_solo_p50_ms"],
            r["observed_solo_latency_ratio"],
        ),
        (
            "solo p99, ms",
            r["raw_solo_p99_ms"],
            r["engine_solo_p99_ms"],
            _ratio(r, "solo_p99_ms"),
            r["observed_solo_p99_ms"],
            "",
        ),
        (
            "compensation, sagas/s",
            "",
            r["compensation_sagas_per_s"],
            r["compensation_ratio"],
            "",
            "",
        ),
        ("  compensation p50, ms", "", r["compensation_p50_ms"], "", "", ""),
        ("tracing on, sagas/s", "", r["tracing_on_sagas_per_s"], r["tracing_ratio"], "", ""),
        ("engine RSS, MiB", "", f"{r['rss_warm_mib']} -> {r['rss_end_mib']}", "", "", ""),
        ("  RSS growth, %", "", r["rss_growth_pct"], "", "", ""),
    ]
    for role in ("driver", "server", "raw", "engine", "participants"):
        raw_cpu = cpu["raw"].get(role, 0) if role != "engine" and role != "participants" else ""
        eng_cpu = cpu["engine"].get(role, 0) if role != "raw" else ""
        obs_cpu = obs.get(role, 0) if role != "raw" else ""
        rows.append((f"CPU/saga {role}, µs", raw_cpu, eng_cpu, "", obs_cpu, ""))
    raw_total = sum(cpu["raw"].get(role, 0) for role in RAW_ROLES)
    engine_total = sum(cpu["engine"].get(role, 0) for role in ENGINE_ROLES)
    observed_total = sum(obs.get(role, 0) for role in ENGINE_ROLES)
    rows.append(
        (
            "CPU/saga total, µs",
            raw_total,
            engine_total,
            r["cpu_ratio"],
            observed_total,
            r["observed_cpu_ratio"],
        )
    )
    ops = r["server_ops_per_saga"]
    counted = sorted({k for flow in ops.values() for k in flow})
    for name in counted:
        row = [ops.get(flow, {}).get(name, "") for flow in ("raw", "engine", "observed")]
        rows.append((f"per saga: {name}", row[0], row[1], "", row[2], ""))
    head = ("", "raw", "engine", "ratio", "observed", "ratio")
    width = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, width, strict=True))
        )
        for row in [head, *rows]
    ]
    s = r["settings"]
    lines.append(
        f"\n{s['sagas']} sagas x {len(r['runs']['raw'])} rounds, {s['inflight']} in flight, "
        f"{s['solo']} solo; nats-server {s['server_version']}, Python {s['python_version']}, "
        f"{s['cpu_count']} CPUs; engine replicas {s['engine_replicas']}"
        f" (partitions {s.get('engine_partitions', 0)}); "
        f"OTLP received {sum(r['otlp_bytes'].values()):,} bytes "
        f"({r['otlp_spans']} spans, {r['spans_per_saga']} per traced saga)"
    )
    lines.append(
        "targets: "
        + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in r["targets_met"].items())
    )
    bad = {k: v for k, v in r["unexpected_outcomes"].items() if v}
    if bad:
        lines.append(f"unexpected saga outcomes (timeouts under load?): {bad}")
    return "\n".join(lines)


def _ratio(r: dict[str, Any], suffix: str) -> float | str:
    raw, engine = r[f"raw_{suffix}"], r[f"engine_{suffix}"]
    return round(engine / raw, 2) if raw else ""


async def bench(opts: Options) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    run = Run(opts, work)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    ok = False
    try:
        result = await run.execute()
        ok = True
        return result
    finally:
        await run.close()
        loop.remove_signal_handler(signal.SIGTERM)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        result = asyncio.run(bench(opts))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; everything started was stopped", file=sys.stderr)
        return 143
    except (BenchError, ServerNotFoundError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if opts.as_json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
