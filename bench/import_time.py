"""How long ``import saga.participant`` takes, next to baselines measured in the same run.

    python bench/import_time.py [--runs 15] [--no-bytecode] [MODULE ...]

Each run is a fresh interpreter started with ``-X importtime -c "import MODULE"``; the
figure is the cumulative time ``-X importtime`` gives the module's own line (what issue 17's
target counts: under 0.25 s for ``saga.participant``). By default the bytecode is cached
(in a temporary ``PYTHONPYCACHEPREFIX``, after one uncounted run per module), as for an
installed service; ``--no-bytecode`` runs under ``PYTHONDONTWRITEBYTECODE=1`` instead, so
modules without a ``__pycache__`` (this repository's, when so checked out) are compiled in
every run. The modules are measured in turn within each round, so a busy machine slows them
alike; the last column is each one's median against the median of ``asyncio`` in the same
run (the floor of any asyncio service). ``nats`` (nats-py alone) is there to show what the
SDK no longer pays at import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "asyncio"
DEFAULT = ("saga.participant", "nats", BASELINE)


def import_seconds(module: str, pycache: str | None = None) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter, from ``-X importtime``;
    ``pycache``: where bytecode is written and read (``None``: none is written)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) == 3 and parts[2] == module and parts[1].isdigit():
            cumulative = parts[1]
            return int(cumulative) / 1e6
    raise RuntimeError(f"no -X importtime line for {module}: {done.stderr[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per module")
    parser.add_argument("--no-bytecode", action="store_true", help="write no bytecode")
    parser.add_argument("modules", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    modules = list(dict.fromkeys([*args.modules, BASELINE]))
    times: dict[str, list[float]] = {m: [] for m in modules}
    with tempfile.TemporaryDirectory(prefix="import-time-") as tmp:
        pycache = None if args.no_bytecode else tmp
        if pycache is not None:
            for module in modules:
                import_seconds(module, pycache)  # writes the bytecode; not counted
        for _ in range(args.runs):
            for module in modules:
                times[module].append(import_seconds(module, pycache))
    base = statistics.median(times[BASELINE])
    cached = "no bytecode written" if args.no_bytecode else "bytecode cached"
    print(f"{args.runs} fresh interpreters per module, {cached}, {os.cpu_count()} cores")
    print(f"{'module':<20} {'min s':>8} {'median s':>9} {'median/' + BASELINE:>12}")
    for module in modules:
        low, mid = min(times[module]), statistics.median(times[module])
        print(f"{module:<20} {low:8.3f} {mid:9.3f} {mid / base:12.1f}")


if __name__ == "__main__":
    main()
