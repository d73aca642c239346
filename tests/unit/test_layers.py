"""The layers of ``docs/architecture.md``, enforced on the source: each rule names a layer and
the modules it must not import (read with ``ast``, so imports under ``TYPE_CHECKING`` and
inside functions count too)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAGA = ROOT / "saga"

WIRE = ("nats", "saga.nats", "aiohttp")
"""The broker and HTTP: adapters only."""
SERVICES = ("saga.engine", "saga.admin", "saga.console", "saga.participant", "saga.cli")
"""The programs built from the layers below them."""

RULES: dict[str, tuple[str, ...]] = {
    # The pure core: decide() and its types, no I/O.
    "saga.core": (*WIRE, *SERVICES, "saga.store", "saga.index", "saga.telemetry", "yaml"),
    # The DSL (model, loader, checks): below the core.
    "saga.definition": (*WIRE, *SERVICES, "saga.core", "saga.store", "saga.telemetry"),
    # Wire names and the smallest shared pieces: import no other layer.
    "saga.protocol": ("saga.core", "saga.definition", *WIRE, *SERVICES),
    "saga.errors": ("saga.core", "saga.definition", *WIRE, *SERVICES),
    "saga.jsonwire": ("saga.core", "saga.definition", *WIRE, *SERVICES),
    "saga.address": ("saga.core", "saga.definition", *WIRE, *SERVICES),
    "saga.eventloop": ("saga.core", "saga.definition", *WIRE, *SERVICES),
    # Adapters serve the services, never the other way round.
    "saga.nats": SERVICES,
    "saga.store": SERVICES,
    "saga.telemetry": SERVICES,
    # The engine is driven by the CLI and the admin API; it knows neither (but see ASSEMBLY).
    "saga.engine": ("saga.admin", "saga.console", "saga.participant", "saga.cli"),
    # The participant SDK stands alone: a service imports no engine and no DSL.
    "saga.participant": (
        "saga.engine",
        "saga.core",
        "saga.definition",
        "saga.admin",
        "saga.console",
        "saga.store",
        "saga.index",
        "saga.cli",
        "yaml",
        "jmespath",
    ),
}

ASSEMBLY = {ROOT / "saga" / "engine" / "process.py"}
"""``saga run``'s process: it assembles the engine, its admin API and console, so it alone
sits above them (and nothing in the engine imports it back)."""


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in the file."""
    package = list(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _files_of(layer: str) -> list[Path]:
    path = ROOT / Path(*layer.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files_of(layer)
        if path not in ASSEMBLY
        for line, module in _imports(path)
        for banned in forbidden
        if _within(module, banned) and not _within(module, layer)
    ]


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_nothing_it_must_not(layer: str) -> None:
    assert _files_of(layer), f"{layer}: no such module (update RULES when moving a layer)"
    assert _violations(layer, RULES[layer]) == []


def test_nothing_in_the_engine_imports_its_process() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _files_of("saga.engine")
        if path not in ASSEMBLY
        for line, module in _imports(path)
        if _within(module, "saga.engine.process")
    ]
    assert found == []


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: an import of the engine (plain, relative, or under TYPE_CHECKING)
    is found, and an import of a sibling inside the layer is not."""
    source = tmp_path / "saga" / "participant" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import saga.engine.service\n"
        "from saga.participant import app\n"
        "from . import worker\n"
        "from ..core import decide\n"
        "if TYPE_CHECKING:\n"
        "    from saga.definition.model import SagaDefinition\n"
    )
    modules = [module for _, module in _imports(source, tmp_path)]
    assert "saga.participant" in modules
    banned = RULES["saga.participant"]
    hits = [m for m in modules if any(_within(m, b) for b in banned)]
    assert hits == ["saga.engine.service", "saga.core", "saga.definition.model"]


FORBIDDEN_AT_IMPORT = (
    *RULES["saga.participant"],
    "nats",  # nats-py (and through it aiohttp's client): loaded when the app runs
    "aiohttp",  # the probes' server starts only with --health
    "pydantic",  # NatsSettings: loaded when the app connects
    "opentelemetry.sdk",  # loaded when tracing is configured
    "opentelemetry.propagate",  # its entry points are read at import: with the first message
    "click",
    "uvloop",  # the participant's event loop: chosen when it runs
)


PROBE = """
import json, sys
import saga.participant as p

[getattr(p, name) for name in p.__all__]
app = p.App("probe")

@app.step("probe.do", success="probe.done")
async def handle(ctx: p.Context, payload: dict) -> dict:
    return {}

print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_participant_sdk_loads_no_engine_dsl_server_or_client() -> None:
    """What importing every public name of ``saga.participant`` and declaring an app with a
    handler load, in a fresh interpreter (the import time is measured by
    ``bench/import_time.py``, not here)."""
    code = PROBE
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert {"saga.participant.app", "saga.participant.runner"} <= set(loaded)  # the SDK loaded
    assert [m for m in loaded if any(_within(m, b) for b in FORBIDDEN_AT_IMPORT)] == []
