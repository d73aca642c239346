"""Several versions of one saga loaded together."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from saga.cli import main
from saga.definition import load_catalog, load_definitions, version_warnings
from saga.errors import DefinitionError

V1 = """
name: shop
version: 1
trigger: {event: shop.ordered}
steps:
  - {name: reserve, publish: {event: stock.reserve}, success: stock.reserved}
  - {name: charge, publish: {event: pay.charge}, success: pay.charged, failure: pay.declined}
"""
V2 = V1.replace("version: 1", "version: 2").replace(", failure: pay.declined", "") + (
    "  - {name: ship, publish: {event: ship.book}, success: ship.booked}\n"
)


def write(folder: Path, **files: str) -> Path:
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_new_instances_use_the_newest_version(tmp_path: Path) -> None:
    catalog = load_catalog([write(tmp_path, v1=V1, v2=V2)])
    assert len(catalog) == 2
    latest = catalog.latest("shop")
    assert latest is not None
    assert latest.version == 2
    older = catalog.get("shop", 1)
    assert older is not None
    assert [s.name for s in older.steps] == ["reserve", "charge"]
    assert load_definitions([tmp_path])["shop"].version == 2


def test_a_version_defined_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="version 1 is already defined"):
        load_catalog([write(tmp_path, a=V1, b=V1)])


def test_a_subject_the_newest_version_dropped_is_a_warning(tmp_path: Path) -> None:
    warnings = version_warnings(load_catalog([write(tmp_path, v1=V1, v2=V2)]))
    assert warnings == [
        "saga 'shop': version 2 no longer consumes pay.declined; instances still running on "
        "version 1 need them: keep version 1 loaded until they finish"
    ]


def test_validate_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(write(tmp_path, v1=V1, v2=V2))])
    assert result.exit_code == 0
    assert "warning: saga 'shop': version 2 no longer consumes pay.declined" in result.output
