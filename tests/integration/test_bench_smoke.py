"""The benchmark runs end to end with tiny numbers and reports every key: never a timing.

Figures come from ``python bench/sagas.py`` itself (see docs/performance.md); a test
on a shared machine can only check that the bench works.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "sagas.py"
KEYS = (
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
SETTINGS = ("sagas", "inflight", "server_version", "python_version", "cpu_count")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_runs_and_reports_every_key(tmp_path: Path) -> None:
    # given a tiny run, started from another directory as a user would
    args = ["--json", "--sagas", "200", "--inflight", "20", "--solo", "10", "--warmup", "20"]

    # when
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )

    # then it exits cleanly with one JSON object holding every key as a number
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert {k: result.get(k) for k in KEYS if not is_number(result.get(k))} == {}
    settings = result["settings"]
    assert {k: settings.get(k) for k in SETTINGS if settings.get(k) in (None, "")} == {}
    assert settings["sagas"] == 200
    assert settings["inflight"] == 20
    assert result["cpu_ratio"] > 0
    # the observed flow ran to completion and sent no commands: fewer stored events per saga
    assert result["unexpected_outcomes"]["observed"] == 0
    ops = result["server_ops_per_saga"]
    assert ops["observed"]["stored SAGA_EVENTS"] < ops["engine"]["stored SAGA_EVENTS"]
