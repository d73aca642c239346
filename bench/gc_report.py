"""What ``bench/gc_probe`` recorded: the collector's work in each saga process.

    python bench/gc_report.py DIR

One line per process (in the order they exited): its CPU, then per generation the
collections made once it had started (after :func:`saga.heap.settle_after_start`), their
CPU and the objects they freed, and the share of the process's CPU they took; the
collections during start-up apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def line(report: dict[str, object]) -> str:
    gens = report["generations"]
    assert isinstance(gens, dict)
    running, start = gens["running"], gens["start-up"]
    cpu = float(str(report["cpu_s"]))
    spent = sum(row[1] for row in running)
    parts = [
        f"g{g}: {n:.0f}x {s * 1e3:.1f} ms {c:.0f} freed" for g, (n, s, c) in enumerate(running)
    ]
    return (
        f"{report['role']:<12} {report['pid']:>7} cpu {cpu:6.2f} s  rss {report['rss_mib']:6.1f} MiB"
        f"  start-up {sum(r[1] for r in start) * 1e3:6.1f} ms  running: {', '.join(parts)}"
        f"  = {spent * 1e3:.1f} ms ({100 * spent / cpu:.2f}% of CPU)  threshold {report['threshold']}"
    )


def main() -> None:
    files = sorted(Path(sys.argv[1]).glob("*.json"), key=lambda p: p.stat().st_mtime)
    for path in files:
        print(line(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
