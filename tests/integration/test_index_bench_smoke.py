"""bench/index_scale.py runs end to end with a few hundred instances: never a timing.

The figures come from the bench itself at a million instances (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "index_scale.py"
TIMED = (
    "list_parked_50_ms",
    "list_parked_page2_ms",
    "list_last_hour_50_ms",
    "find_by_id_ms",
    "status_by_id_ms",
    "find_by_business_key_ms",
)


@pytest.mark.timeout(180)
def test_index_bench_runs_and_reports_every_figure(tmp_path: Path) -> None:
    # given a tiny run, started from another directory as a user would
    args = ["--json", "--instances", "400", "--baseline-at", "200", "--runs", "1"]

    # when
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )

    # then every figure is there, at both sizes, with the old way's beside the small one
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert (result["instances"], result["baseline_at"]) == (400, 200)
    for size in ("at_200", "at_400"):
        assert {k for k in TIMED if not isinstance(result[size].get(k), float)} == set(), size
    assert set(result["at_200"]) >= {"scan_list_parked_50_ms", "scan_find_by_id_ms"}
    assert isinstance(result["at_400"]["cli_list_parked_50_ms"], float)
