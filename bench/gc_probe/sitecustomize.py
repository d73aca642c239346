"""How often the garbage collector runs in a saga process, and the CPU it takes.

    GC_PROBE_DIR=/tmp/gc PYTHONPATH=bench/gc_probe python bench/sagas.py ...
    python bench/gc_report.py /tmp/gc

Python imports ``sitecustomize`` at start-up from the path; with ``GC_PROBE_DIR`` set, each
``saga run`` and ``saga participant`` process (the benchmark passes ``PYTHONPATH`` on to
them) times every collection through ``gc.callbacks`` (thread CPU, as the collection runs
in the thread that allocated) and writes ``ROLE-PID.json`` there when it exits: per
generation, the collections, their CPU in seconds and the objects they freed, before and
after :func:`saga.heap.settle_after_start` (told apart by ``gc.get_freeze_count()``), with
the process's CPU and RSS. Other processes, and all of them without the variable, are
left alone. ``GC_PROBE_THRESHOLD`` sets ``SAGA_GC_THRESHOLD`` for them (the benchmark
passes no ``SAGA_*`` variable of its caller's).
"""

from __future__ import annotations

import os


def _install(out_dir: str) -> None:
    import atexit
    import gc
    import json
    import time

    with open("/proc/self/cmdline", "rb") as cmdline:
        args = [a.decode() for a in cmdline.read().split(b"\0") if a]
    if not any(os.path.basename(a) == "saga" for a in args[:3]):  # python -m saga, or bin/saga
        return
    if not {"run", "participant"} & set(args):
        return
    threshold = os.environ.get("GC_PROBE_THRESHOLD")
    if threshold:
        os.environ["SAGA_GC_THRESHOLD"] = threshold
    target = next((a for a in args if ":" in a and not a.startswith(("-", "nats"))), "")
    role = "engine" if "run" in args else target.rpartition(":")[2] or "participant"
    phases: dict[str, list[list[float]]] = {
        "start-up": [[0, 0.0, 0] for _ in range(3)],
        "running": [[0, 0.0, 0] for _ in range(3)],
    }
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        spent = time.thread_time() - started[0]
        row = phases["running" if gc.get_freeze_count() else "start-up"][info["generation"]]
        row[0] += 1
        row[1] += spent
        row[2] += info["collected"]

    def write() -> None:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        report = {
            "role": role,
            "pid": os.getpid(),
            "cpu_s": time.process_time(),
            "rss_mib": round(rss, 1),
            "threshold": gc.get_threshold(),
            "frozen": gc.get_freeze_count(),
            "generations": phases,
        }
        with open(os.path.join(out_dir, f"{role}-{os.getpid()}.json"), "w") as out:
            json.dump(report, out)

    gc.callbacks.append(timed)
    atexit.register(write)


if os.environ.get("GC_PROBE_DIR"):
    _install(os.environ["GC_PROBE_DIR"])
