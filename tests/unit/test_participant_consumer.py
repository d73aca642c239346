"""The filter rule of a durable shared by the copies of one app (pure; no server)."""

from __future__ import annotations

import pytest

from saga.errors import ProvisioningError
from saga.participant.consumer import FilterPlan, matches, plan_filter


def plan(existing: list[str] | None, ours: list[str]) -> FilterPlan:
    return plan_filter("mail", "SAGA_EVENTS", existing, ours)


def test_no_durable_yet_is_created_with_our_subjects() -> None:
    assert plan(None, ["m.b", "m.a", "m.a"]) == FilterPlan(("m.a", "m.b"), "create")


def test_the_same_filter_is_kept() -> None:
    assert plan(["m.a", "m.b"], ["m.b", "m.a"]) == FilterPlan(("m.a", "m.b"), "keep")


def test_an_older_copy_keeps_the_wider_filter_and_knows_what_it_leaves() -> None:
    assert plan(["m.a", "m.b"], ["m.a"]) == FilterPlan(("m.a", "m.b"), "keep", ("m.b",))


def test_a_wildcard_filter_that_covers_us_is_kept() -> None:
    assert plan(["m.>"], ["m.a", "m.b.c"]) == FilterPlan(("m.>",), "keep", ("m.>",))


def test_a_newer_copy_widens_the_filter() -> None:
    assert plan(["m.a"], ["m.a", "m.b"]) == FilterPlan(("m.a", "m.b"), "widen")


@pytest.mark.parametrize(
    ("existing", "ours"),
    [(["m.send"], ["m.digest"]), (["m.a", "m.b"], ["m.a", "m.c"]), ([], ["m.a"])],
    ids=["another-app", "adds-and-removes", "no-filter"],
)
def test_a_filter_that_belongs_to_something_else_is_refused(
    existing: list[str], ours: list[str]
) -> None:
    with pytest.raises(ProvisioningError, match="consumer mail on SAGA_EVENTS"):
        plan(existing, ours)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "a.b", True),
        ("a.b.c", "a.b", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected
