"""Hash-partitioned map/reduce over Arrow blocks with Ray tasks: the building block of dedup.

A "blocks" value is a list of ObjectRefs of pyarrow Tables (what `ds.materialize().to_arrow_refs()`
gives, and what `ray.data.from_arrow_refs` takes back). `by_partition(blocks, column, fn, parts)`
splits every block by a stable hash of `column` into `parts` pieces (one map task per block) and
calls `fn(table)` once per partition on the concatenated pieces (one reduce task per partition):
every row sharing a value of `column` meets in the same call. The driver only holds refs and
small counts, never rows. Memory per reduce task is rows / parts (`parts_for`).

Plain tasks, not `Dataset.groupby`: Ray Data's hash shuffle starts aggregator actors for every
shuffle, which cost minutes per call on a 2-core machine, while connected components needs a
few shuffles per round.

    edges = by_partition(blocks, "u", large_star, parts_for(n_rows, cpus))
    rows = join_status(doc_blocks, label_blocks, parts)   # a hash join by id
"""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc
import ray

ROWS_PER_PART = 200_000  # bounds the rows one reduce task holds


def parts_for(rows: int, min_parts: int) -> int:
    """Enough partitions that none holds more than ROWS_PER_PART rows, at least `min_parts`."""
    return max(1, min_parts, -(-rows // ROWS_PER_PART))


def partition_of(values: list[str], parts: int) -> pa.Array:
    """A stable partition number per value (blake2b, so every worker agrees)."""
    return pa.array([int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "big")
                     % parts for v in values], pa.int64())


@ray.remote
def _split(t: pa.Table, column: str, parts: int, prep):
    t = prep(t) if prep is not None else t
    part = partition_of(t[column].to_pylist(), parts)
    pieces = tuple(t.filter(pc.equal(part, p)) for p in range(parts))
    return pieces if parts > 1 else pieces[0]


@ray.remote
def _reduce(fn, n_left: int, *pieces: pa.Table) -> pa.Table:
    left = pa.concat_tables(pieces[:n_left], promote_options="default")
    if n_left == len(pieces):
        return fn(left)
    return fn(left, pa.concat_tables(pieces[n_left:], promote_options="default"))


def _split_all(blocks: list, column: str, parts: int, prep) -> list[list]:
    refs = [_split.options(num_returns=parts).remote(b, column, parts, prep) for b in blocks]
    return [r if parts > 1 else [r] for r in refs]


def by_partition(blocks: list, column: str, fn, parts: int, prep=None) -> list:
    """fn(partition table) for each hash partition of `column`; `prep` maps each block first."""
    split = _split_all(blocks, column, parts, prep)
    return [_reduce.remote(fn, len(split), *[s[p] for s in split]) for p in range(parts)]


def join_by(left: list, right: list, column: str, fn, parts: int) -> list:
    """fn(left partition, right partition) for each hash partition of `column` on both sides."""
    ls, rs = _split_all(left, column, parts, None), _split_all(right, column, parts, None)
    return [_reduce.remote(fn, len(ls), *[s[p] for s in ls], *[s[p] for s in rs]) for p in range(parts)]


def join_status(docs: list, labels: list, parts: int) -> list:
    """Set `status` of the document rows whose id appears in the (id, status) label rows."""
    return join_by(docs, labels, "id", _apply_labels, parts)


def _apply_labels(docs: pa.Table, labels: pa.Table) -> pa.Table:
    new = dict(zip(labels["id"].to_pylist(), labels["status"].to_pylist()))
    status = [new.get(i, s) for i, s in zip(docs["id"].to_pylist(), docs["status"].to_pylist())]
    return docs.set_column(docs.schema.get_field_index("status"), "status", pa.array(status, pa.string()))


def total(blocks: list, column: str) -> int:
    """Sum of an integer column over all blocks (only the per-block sums reach the driver)."""
    return sum(ray.get([_sum.remote(b, column) for b in blocks]))


def num_rows(blocks: list) -> int:
    return sum(ray.get([_rows.remote(b) for b in blocks]))


@ray.remote
def _sum(t: pa.Table, column: str) -> int:
    return int(pc.sum(t[column]).as_py() or 0)


@ray.remote
def _rows(t: pa.Table) -> int:
    return t.num_rows
