"""The loader: every broken file in ``broken/`` fails as its ``# expect:`` comment says.

An expectation reads ``# expect: LINE[:COLUMN] PATH: MESSAGE-PART`` (``-`` instead of
``PATH:`` when the problem has no path); a file may have several, one per problem, in
order. Adding a file to ``broken/`` adds a test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from saga.definition import json_schema, load_definition, load_definitions, parse_definition
from saga.definition.yaml_source import MAX_DEFINITION_BYTES
from saga.errors import DefinitionError, Problem

HERE = Path(__file__).parent
BROKEN = sorted((HERE / "broken").glob("*.yaml"))
EXAMPLES = sorted((HERE.parent.parent / "definitions").glob("*.yaml"))

_EXPECT = re.compile(r"^# expect: (\d+)(?::(\d+))? (?:- |(\S+): )(.+)$")

VALID = """\
name: demo
trigger: {event: orders.placed}
steps:
  - name: reserve
    publish: {event: inventory.reserve, data: {order_id: trigger.order_id}}
    success: inventory.reserved
    failure: inventory.rejected
    timeout: 10s
"""


@dataclass(frozen=True)
class Expected:
    line: int
    column: int | None
    path: str
    message: str

    def check(self, problem: Problem) -> None:
        assert problem.line == self.line, problem
        if self.column is not None:
            assert problem.column == self.column, problem
        assert problem.path == self.path, problem
        assert self.message in problem.message, problem


def expectations(file: Path) -> list[Expected]:
    found = []
    for text in file.read_text(encoding="utf-8").splitlines():
        match = _EXPECT.match(text)
        if match:
            line, column, path, message = match.groups()
            found.append(Expected(int(line), column and int(column), path or "", message))
    assert found, f"{file.name} has no '# expect:' line"
    return found


def problems_of(text: str, file: str = "f.yaml") -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, file)
    return caught.value.problems


@pytest.mark.parametrize("file", BROKEN, ids=[f.stem for f in BROKEN])
def test_broken_definition_is_refused_as_expected(file: Path) -> None:
    expected = expectations(file)
    with pytest.raises(DefinitionError) as caught:
        load_definition(file)
    problems = caught.value.problems
    assert len(problems) == len(expected), problems
    for want, got in zip(expected, problems, strict=True):
        assert got.file == str(file)
        want.check(got)


def test_the_corpus_is_not_empty() -> None:
    assert len(BROKEN) >= 25


@pytest.mark.parametrize("file", EXAMPLES, ids=[f.stem for f in EXAMPLES])
def test_example_definitions_load_cleanly(file: Path) -> None:
    definition = load_definition(file)
    assert definition.steps


def test_the_valid_base_of_the_inline_cases_loads() -> None:
    assert parse_definition(VALID).name == "demo"


def test_all_schema_problems_of_a_file_are_reported_together() -> None:
    text = (
        VALID.replace("timeout: 10s", "timeout: 10")
        .replace("success: inventory.reserved", "success: inventory.*")
        .replace("name: reserve", "name: reserve\n    retry: {attempts: 0}")
    )
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [
        (5, "steps[0](reserve).retry.attempts"),
        (7, "steps[0](reserve).success"),
        (9, "steps[0](reserve).timeout"),
    ]


def test_all_cross_field_problems_of_a_file_are_reported_together() -> None:
    text = VALID + (
        "  - name: reserve\n"
        "    publish: {event: payment.charge, data: {id: steps.nothing.id}}\n"
        "    success: inventory.rejected\n"
    )
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [
        (9, "steps[1](reserve).name"),
        (10, "steps[1](reserve).publish.data.id"),
        (11, "steps[1](reserve).success"),
    ]
    assert "duplicate step name" in problems[0].message
    assert "no step named 'nothing'" in problems[1].message
    assert "already means failure of step 'reserve'" in problems[2].message


def test_problems_print_like_a_compiler(tmp_path: Path) -> None:
    file = tmp_path / "saga.yaml"
    file.write_text(VALID.replace("timeout: 10s", "timout: 10s"))
    with pytest.raises(DefinitionError) as caught:
        load_definition(file)
    assert str(caught.value) == (
        f"{file}:8:5: steps[0](reserve).timout: unknown key 'timout' (did you mean 'timeout'?)"
    )


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    file = tmp_path / "huge.yaml"
    padding = "# " + "x" * 98 + "\n"
    file.write_text(VALID + padding * (MAX_DEFINITION_BYTES // len(padding) + 1))
    with pytest.raises(DefinitionError) as caught:
        load_definition(file)
    [problem] = caught.value.problems
    assert (problem.line, problem.column, problem.path) == (0, 0, "")
    assert f"at most {MAX_DEFINITION_BYTES}" in problem.message
    assert str(problem).startswith(f"{file}: file is ")


def test_an_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionError) as caught:
        load_definition(file)
    assert "cannot read file" in caught.value.problems[0].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [*a]\n", "an alias refers to a value that contains it"),
        ("name: !!python/object:os.system x\n", "unsupported value"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
        ("a: " + "[" * 80 + "]" * 80 + "\n", "nested more than 64 levels deep"),
        ("a: 1\n---\nb: 2\n", "a file holds one saga"),
        ("a: `42`\n", 'must be quoted in YAML, e.g. "`42`"'),
    ],
    ids=["recursive-alias", "python-tag", "deep-nesting", "nesting-limit", "two-docs", "backtick"],
)
def test_hostile_or_odd_yaml_is_a_problem_not_a_crash(text: str, message: str) -> None:
    [problem] = problems_of(text)
    assert message in problem.message


def test_alias_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    [problem] = problems_of("\n".join(lines))
    assert "aliases expand to more than" in problem.message


def test_an_alias_may_share_a_retry_policy() -> None:
    text = VALID.replace("timeout: 10s", "timeout: 10s\n    retry: &retry {attempts: 5}")
    text += (
        "  - name: charge\n"
        "    publish: {event: payment.charge}\n"
        "    success: payment.charged\n"
        "    timeout: 10s\n"
        "    retry: *retry\n"
    )
    definition = parse_definition(text)
    assert definition.steps[0].retry == definition.steps[1].retry
    assert definition.steps[1].retry is not None
    assert definition.steps[1].retry.attempts == 5


def test_keys_are_taken_as_written() -> None:
    # YAML 1.1 would read `on` as a boolean key; we keep the text and name it.
    [problem] = problems_of(VALID.replace("timeout: 10s", "timeout: 10s\n    on: true"))
    assert problem.path == "steps[0](reserve).on"
    assert "unknown key 'on'; allowed here: name, publish, success" in problem.message


def test_a_template_leaf_is_located_in_a_nested_payload() -> None:
    text = VALID.replace("{order_id: trigger.order_id}", "{order: {id: trigger.order_id, n: 2}}")
    [problem] = problems_of(text)
    assert problem.path == "steps[0](reserve).publish.data.order.n"
    assert (problem.line, problem.column) == (5, text.splitlines()[4].index("n: 2") + 1)


def test_an_invalid_trigger_id_field_is_located_at_the_field() -> None:
    text = VALID.replace("{event: orders.placed}", "{event: orders.placed, id: {field: 'a..b'}}")
    [problem] = problems_of(text)
    assert problem.path == "trigger.id.field"
    assert "unexpected '.' at character 3" in problem.message


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: demo", "name: Order Saga", "e.g. 'order-saga'"),
        ("event: orders.placed", "event: 2024", "must be text, got the number 2024 (quote it)"),
        ("failure: inventory.rejected", "failure:", "must be a subject or a list of subjects"),
        ("timeout: 10s", "timeout: 10s\n    keep: id", "must be a list, got the text 'id'"),
        ("timeout: 10s", "timeout: 10s\n    retry: {on_failure: maybe}", "must be true or false"),
        ("timeout: 10s", "timeout: 10s\n    retry: {multiplier: 0.5}", "got 0.5"),
        ("steps:\n", "steps:\n  - just text\n", "must be a mapping of keys to values"),
        ("timeout: 10s", "timeout: 10s\n    keep: [order-id]", "is not a valid field name"),
        ("order_id: trigger", "order_id: reserve", "did you mean 'steps.reserve.order_id'?"),
        ("trigger.order_id", "saga.owner", "saga has only id, name, version"),
        ("trigger.order_id", "join('-')", "join() takes 2 argument(s), got 1"),
        ("trigger.order_id", '"\'trigger"', "Unclosed ' delimiter at character 1"),
    ],
)
def test_messages_speak_the_dsl(old: str, new: str, message: str) -> None:
    assert old in VALID
    problems = problems_of(VALID.replace(old, new, 1))
    assert any(message in p.message for p in problems), problems


def test_a_compensation_may_read_its_own_step() -> None:
    text = VALID + (
        "    keep: [reservation_id]\n"
        "    compensate:\n"
        "      publish:\n"
        "        event: inventory.release\n"
        "        data: {id: steps.reserve.reservation_id, order: trigger.order_id}\n"
    )
    assert parse_definition(text).steps[0].compensate is not None


def test_expressions_evaluated_elsewhere_are_not_references() -> None:
    text = VALID.replace("trigger.order_id", '"sort_by(trigger.items, &price)[0].sku"')
    assert parse_definition(text).steps[0].publish is not None


# -- folders -------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / name
    file.write_text(text)
    return file


def test_a_folder_loads_every_yaml_file_keyed_by_saga_name(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    other = VALID.replace("name: demo", "name: other").replace("orders.", "o.")
    write(tmp_path, "b.yml", other.replace("inventory.", "stock."))
    write(tmp_path, "notes.txt", "not a definition")
    loaded = load_definitions([tmp_path])
    assert sorted(loaded) == ["demo", "other"]


def test_the_example_folder_loads() -> None:
    loaded = load_definitions([EXAMPLES[0].parent])
    assert sorted(loaded) == ["order-fulfilment", "travel-booking"]


def test_a_saga_version_defined_twice_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", "# the same saga, newer\n" + VALID.replace("version", "v"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path])
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column, problem.path) == (str(second), 2, 1, "name")
    assert problem.message == f"saga 'demo' version 1 is already defined in {tmp_path / 'a.yaml'}"


def test_a_subject_consumed_by_two_sagas_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    other = VALID.replace("name: demo", "name: other").replace("orders.", "o.")
    second = write(tmp_path, "b.yaml", other)
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path])
    assert [(p.file, p.line, p.column, p.path) for p in caught.value.problems] == [
        (str(second), 6, 5, "steps[0](reserve).success"),
        (str(second), 7, 5, "steps[0](reserve).failure"),
    ]
    assert caught.value.problems[0].message == (
        "subject 'inventory.reserved' (success of step 'reserve') is also consumed by saga "
        f"'demo' in {tmp_path / 'a.yaml'}: a subject the engine consumes must belong to one saga"
    )


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("10s", "10"))
    write(tmp_path, "b.yaml", "")
    write(tmp_path, "c.yaml", VALID.replace("name: demo", "name: fine"))
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path])
    assert [Path(p.file).name for p in caught.value.problems] == ["a.yaml", "b.yaml"]


def test_no_definition_files_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# nothing here")
    with pytest.raises(DefinitionError) as caught:
        load_definitions([tmp_path])
    [problem] = caught.value.problems
    assert problem.file == str(tmp_path)
    assert problem.message == "no definition files found"


def test_no_paths_at_all_is_a_problem() -> None:
    with pytest.raises(DefinitionError, match="no definition files found"):
        load_definitions(iter([]))


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read file"):
        load_definitions([tmp_path / "absent.yaml"])


# -- the reference and the schema in docs/ ---------------------------------------

DOCS = HERE.parent.parent / "docs"


def doc_blocks(language: str) -> list[str]:
    text = (DOCS / "dsl.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_complete_examples_in_the_reference_load() -> None:
    complete = [b for b in doc_blocks("yaml") if "\nsteps:\n" in b and "timout" not in b]
    assert complete
    for block in complete:
        parse_definition(block, "docs/dsl.md")


def test_the_error_example_in_the_reference_is_what_validation_prints() -> None:
    [broken] = [b for b in doc_blocks("yaml") if "timout" in b]
    first_run, second_run = doc_blocks("text")[:2]
    printed = [line for line in first_run.splitlines() if line.startswith("definitions/")]
    assert [str(p) for p in problems_of(broken, "definitions/order.yaml")] == printed
    fixed = broken.replace("timout", "timeout").replace("attempts: 0", "attempts: 2")
    assert [str(p) for p in problems_of(fixed, "definitions/order.yaml")] == [second_run.strip()]


def test_the_published_json_schema_is_current() -> None:
    published = json.loads((DOCS / "saga.schema.json").read_text(encoding="utf-8"))
    assert published == json_schema(), "run: saga schema > docs/saga.schema.json"
