"""Split one benchmark run over several machines: ``--shard K/N`` picks the K-th of N disjoint parts of its sequences.

The partition depends only on the sequences' names and frame counts, never on the order a reader lists them in or
on the machine, so the N commands (one per machine) cover every sequence exactly once. It balances the frames, not
the sequence count, because a benchmark's sequences differ in length by an order of magnitude (LaSOT: 1,000 to
11,000 frames): longest first, each to the part with the fewest frames so far (ties: the lower part number).
"""
from __future__ import annotations

import re
from typing import Sequence as SequenceType

from ..data.sequence import Sequence
from ..utils.errors import UserError

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``UserError`` naming ``--shard`` otherwise."""
    match = _SHARD.fullmatch(text or "")
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UserError(f"--shard {text!r}: expected K/N with 1 <= K <= N (part K of N), e.g. --shard 1/4")
    return int(match.group(1)), int(match.group(2))


def partition(frame_counts: dict[str, int], count: int) -> list[list[str]]:
    """Sequence name -> frames, split into ``count`` parts with balanced frame totals; each part sorted by name."""
    parts: list[list[str]] = [[] for _ in range(count)]
    totals = [0] * count
    for name in sorted(frame_counts, key=lambda n: (-frame_counts[n], n)):
        k = min(range(count), key=lambda i: (totals[i], i))
        parts[k].append(name)
        totals[k] += frame_counts[name]
    return [sorted(part) for part in parts]


def shard_sequences(sequences: SequenceType[Sequence], index: int, count: int) -> list[Sequence]:
    """The sequences of part ``index`` (1-based) of ``count`` (see ``partition``), in their given order."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: expected 1 <= index <= count")
    names = [s.name for s in sequences]
    if len(set(names)) != len(names):
        raise ValueError("shard: sequence names are not unique")
    chosen = set(partition({s.name: len(s) for s in sequences}, count)[index - 1])
    return [s for s in sequences if s.name in chosen]
