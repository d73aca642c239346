"""The definition commands of the CLI: exit codes and output people and tools read."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from saga.cli import main
from tests.conftest import DEFINITIONS

BROKEN = """\
name: shop
trigger: {event: shop.ordered}
steps:
  - name: reserve
    success: stock.reserved
    timeout: 10
"""


def test_validate_examples_exits_zero() -> None:
    result = CliRunner().invoke(main, ["validate", str(DEFINITIONS)])
    assert result.exit_code == 0, result.output
    assert "2 valid, 0 invalid" in result.output


def test_validate_broken_file_names_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    result = CliRunner().invoke(main, ["validate", str(broken)])
    assert result.exit_code == 1
    assert f"{broken}:6:" in result.output
    assert "steps[0](reserve).timeout" in result.output


def test_validate_json_report(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = CliRunner().invoke(main, ["validate", "--json", str(tmp_path)])
    report = json.loads(result.output)
    assert result.exit_code == 1
    assert report["valid"] is False
    problem = report["files"][0]["problems"][0]
    assert (problem["line"], problem["path"]) == (6, "steps[0](reserve).timeout")


def test_validate_reports_sagas_defined_twice_across_files(tmp_path: Path) -> None:
    text = (DEFINITIONS / "order-fulfilment.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "order-fulfilment" in result.output


def test_validate_empty_folder_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "no definition files found" in result.output


def test_schema_is_json_schema() -> None:
    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert result.exit_code == 0
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "trigger", "steps"} <= set(schema["properties"])


def test_graph_of_a_linear_saga_chains_the_undos_in_reverse() -> None:
    result = CliRunner().invoke(main, ["graph", str(DEFINITIONS / "order-fulfilment.yaml")])
    assert result.exit_code == 0
    assert result.output.startswith("flowchart TD")
    assert "undo_charge_payment --> undo_reserve_inventory" in result.output
    assert "schedule_shipping -.->|shipping.failed / timeout| undo_charge_payment" in result.output


def test_graph_of_parallel_branches_follows_after_and_shows_conditions() -> None:
    result = CliRunner().invoke(main, ["graph", str(DEFINITIONS / "travel-booking.yaml")])
    assert result.exit_code == 0
    assert "book_flight -->|travel.flight.booked| book_hotel" in result.output
    assert "book_flight -->|travel.flight.booked| rent_car" in result.output
    assert "rent_car -->|travel.car.rented| completed" in result.output
    assert "compensate -.-> undo_book_hotel" in result.output
    assert "when trigger.no_car" in result.output
    assert "book_hotel([" in result.output  # observed steps are drawn rounded


def test_graph_of_broken_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    result = CliRunner().invoke(main, ["graph", str(broken)])
    assert result.exit_code == 1


def test_operator_actions_need_an_id_or_a_bulk_filter() -> None:
    runner = CliRunner()
    alone = runner.invoke(main, ["retry"])
    assert alone.exit_code == 2
    assert "give a SAGA_ID, or --state and --saga to retry in bulk" in alone.output
    both = runner.invoke(main, ["terminate", "o-1", "--saga", "shop", "--state", "running"])
    assert both.exit_code == 2
    assert "not both" in both.output
    bogus = runner.invoke(main, ["redrive", "--saga", "shop", "--state", "stuck"])
    assert bogus.exit_code == 2
    assert "unknown status (have: running, compensating" in bogus.output
    for action in ("abort", "retry", "resume", "terminate", "redrive"):
        assert "--yes" in runner.invoke(main, [action, "--help"]).output
