"""The partition rules every replica computes on its own: they must agree and balance."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from saga.engine.partitions import assign, partition_of

members = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8, unique=True)
counts = st.integers(min_value=1, max_value=64)


@given(members, counts)
def test_every_partition_has_exactly_one_owner(names: list[str], partitions: int) -> None:
    owned = assign(names, partitions)
    dealt = sorted(p for ps in owned.values() for p in ps)
    assert dealt == list(range(partitions))
    assert set(owned) == set(names)


@given(members, counts)
def test_shares_differ_by_at_most_one(names: list[str], partitions: int) -> None:
    sizes = [len(ps) for ps in assign(names, partitions).values()]
    assert max(sizes) - min(sizes) <= 1


@given(members, counts, st.randoms())
def test_every_replica_computes_the_same_deal(names: list[str], partitions: int, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(names)
    rnd.shuffle(shuffled)
    assert assign(shuffled, partitions) == assign(names, partitions)


def test_no_members_own_nothing() -> None:
    assert assign([], 4) == {}


@given(st.text(max_size=80), counts)
def test_partition_is_in_range(key: str, partitions: int) -> None:
    assert 0 <= partition_of(key, partitions) < partitions


def test_partition_rule_never_changes() -> None:
    """crc32, not hash(): the same in every replica whatever PYTHONHASHSEED is, and the same
    after an upgrade, or replicas of two versions would route one instance two ways."""
    assert [partition_of(f"shop.o-{n}", 4) for n in range(6)] == [3, 1, 3, 1, 2, 0]
    assert partition_of("order-fulfilment.o-1", 12) == 6
