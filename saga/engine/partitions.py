"""Which partition an instance lives in, and which engine replica owns which partition.

Pure functions: every replica computes the same answer from the same member list,
so no coordinator is needed (the server's pinned consumers enforce one owner at a
time while replicas disagree during a change).
"""

from __future__ import annotations

import zlib


def partition_of(instance_key: str, partitions: int) -> int:
    """Stable across processes, machines and Python versions (unlike ``hash``)."""
    return zlib.crc32(instance_key.encode()) % partitions


def assign(members: list[str], partitions: int) -> dict[str, list[int]]:
    """Deal the partitions round-robin over the members in name order: balanced to within
    one partition, and the same on every replica."""
    ordered = sorted(set(members))
    owned: dict[str, list[int]] = {member: [] for member in ordered}
    if not ordered:
        return owned
    for partition in range(partitions):
        owned[ordered[partition % len(ordered)]].append(partition)
    return owned
