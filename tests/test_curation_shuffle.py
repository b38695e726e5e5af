"""The dedup shuffle's split tree (pipelines/curation/shuffle.py): more partitions than one split
task may cut into, several passes, the same partitions as one pass.

    python -m pytest tests/test_curation_shuffle.py -q     (under a minute; Ray via ray_session)
"""
from __future__ import annotations

import random

import pyarrow as pa
import pytest

from pipelines.curation import shuffle


@pytest.mark.parametrize("parts", [1, 2, 7, 128, 129, 5000, 16384, 16385, 75000])
def test_fanout_is_the_fewest_passes_of_bounded_pieces(parts):
    limit = shuffle.BYTES_PER_PART // shuffle.MIN_PIECE_BYTES
    passes, f = shuffle._fanout(parts)
    assert f ** passes >= parts and (passes == 1 or f <= limit)
    assert passes == 1 or limit ** (passes - 1) < parts  # no fewer passes would do
    assert passes == 1 or (f - 1) ** passes < parts  # the smallest even fan-out


def _rows(n: int = 6000):
    rng = random.Random(0)
    return pa.table({"key": [f"k{rng.randrange(900)}" for _ in range(n)], "id": [f"d{i:05d}" for i in range(n)]})


@pytest.mark.parametrize("fanout", [None, 3, 2])
def test_tree_gives_each_partition_its_rows(ray_session, monkeypatch, fanout):
    """A 3- and a 5-pass tree (small budgets, MAX_FANOUT 3 and 2) put every row in the partition
    partition_of names, as one pass does, with no helper column left."""
    import ray

    def identity(t):  # nested: Ray pickles it by value (workers cannot import this module)
        return t

    def pair_counts(left, right):
        return pa.table({"left": [left.num_rows], "right": [right.num_rows]})

    table = _rows()
    blocks = [ray.put(table.slice(i, 500)) for i in range(0, table.num_rows, 500)]
    monkeypatch.setattr(shuffle, "BYTES_PER_PART", 40_000)
    monkeypatch.setattr(shuffle, "MIN_PIECE_BYTES", 100)
    monkeypatch.setattr(shuffle, "MAX_FANOUT", fanout)
    parts = 23
    shuffle.STATS.clear()
    out = ray.get(shuffle.by_partition(blocks, "key", identity, parts))
    assert shuffle.STATS["passes"] == shuffle._fanout(parts)[0] == {None: 1, 3: 3, 2: 5}[fanout]
    assert len(out) == parts
    for p, t in enumerate(out):
        assert t.column_names == ["key", "id"]
        assert set(shuffle.partition_of(t["key"].to_pylist(), parts)) <= {p}
    got = sorted(zip(*[pa.concat_tables(out)[c].to_pylist() for c in ("key", "id")]))
    assert got == sorted(zip(table["key"].to_pylist(), table["id"].to_pylist()))
    biggest_block = max(table.slice(i, 500).nbytes for i in range(0, table.num_rows, 500))
    assert shuffle.STATS["max_split_bytes"] <= max(40_000, biggest_block)  # bounded split tasks
    joined = ray.get(shuffle.join_by(blocks, blocks[:2], "key", pair_counts, parts))
    assert sum(t["left"][0].as_py() for t in joined) == 6000 and sum(t["right"][0].as_py() for t in joined) == 1000


def test_components_through_a_tree(ray_session, monkeypatch):
    """Connected components (many shuffles, prep functions) give the same roots through a tree."""
    import ray

    from pipelines.curation.components import EDGES, connected_components

    rng = random.Random(3)
    ids = [f"n{i:03d}" for i in range(120)]
    rng.shuffle(ids)
    chain = list(zip(ids[:60], ids[1:60])) + list(zip(ids[60:], ids[61:]))
    table = pa.Table.from_pydict({"u": [a for a, _ in chain], "v": [b for _, b in chain],
                                  "changed": [0] * len(chain)}, schema=EDGES)
    blocks = [ray.put(table.slice(i, 10)) for i in range(0, table.num_rows, 10)]
    monkeypatch.setattr(shuffle, "BYTES_PER_PART", 2_000)
    monkeypatch.setattr(shuffle, "MIN_PIECE_BYTES", 100)
    monkeypatch.setattr(shuffle, "MAX_FANOUT", 2)
    roots = pa.concat_tables(ray.get(connected_components(blocks, parts=5)))
    expected = {x: min(ids[:60]) for x in ids[:60]} | {x: min(ids[60:]) for x in ids[60:]}
    assert dict(zip(roots["id"].to_pylist(), roots["root"].to_pylist())) == {k: v for k, v in expected.items() if k != v}
