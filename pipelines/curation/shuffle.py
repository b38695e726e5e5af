"""Hash-partitioned map/reduce over Arrow blocks with Ray tasks: the building block of dedup.

A "blocks" value is a list of ObjectRefs of pyarrow Tables (what `ds.materialize().to_arrow_refs()`
gives, and what `ray.data.from_arrow_refs` takes back). `by_partition(blocks, column, fn, parts)`
splits the blocks by a stable hash of `column` into `parts` pieces (one map task per group of
consecutive blocks, `_groups`) and calls `fn(table)` once per partition on the concatenated
pieces (one reduce task per partition): every row sharing a value of `column` meets in the same
call. The driver only holds refs and small counts, never rows. A reduce task holds at most
ROWS_PER_PART rows and BYTES_PER_PART bytes (`parts_for(rows, cpus, nbytes)`); a split task the
larger of BYTES_PER_PART and parts x MIN_PIECE_BYTES (`_groups`). That grows with the data past
~128 parts (~25M rows): there raise ROWS_PER_PART (fewer, larger reduce tasks) or add a merge stage.

Plain tasks, not `Dataset.groupby`: Ray Data's hash shuffle starts aggregator actors for every
shuffle, which cost minutes per call on a 2-core machine, while connected components needs a
few shuffles per round.

    edges = by_partition(blocks, "u", large_star, parts_for(n_rows, cpus))
    rows = join_status(doc_blocks, label_blocks, parts)   # a hash join by id
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

ROWS_PER_PART = 200_000  # bounds the rows one reduce task holds (Python objects per row)
BYTES_PER_PART = 32 << 20  # bounds the bytes one reduce or split task holds (documents are wide)
MIN_PIECE_BYTES = 256 << 10  # Ray keeps task results under 100 KiB in the caller's (driver's) memory


def parts_for(rows: int, min_parts: int, nbytes: int = 0) -> int:
    """Enough partitions that none holds more than ROWS_PER_PART rows or BYTES_PER_PART bytes,
    at least `min_parts`."""
    return max(1, min_parts, -(-rows // ROWS_PER_PART), -(-nbytes // BYTES_PER_PART))


def partition_of(values: list[str], parts: int) -> np.ndarray:
    """A stable partition number per value (blake2b, so every worker agrees)."""
    digests = (hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest() for v in values)
    return np.fromiter((int.from_bytes(d, "big") % parts for d in digests), np.int64, len(values))


@ray.remote
def _split(column: str, parts: int, prep, *blocks: pa.Table):
    """One group of blocks -> `parts` tables by partition of `column`: one stable sort, not a
    filter per partition (which costs rows x parts)."""
    t = pa.concat_tables([prep(b) if prep is not None else b for b in blocks], promote_options="default")
    part = partition_of(t[column].to_pylist(), parts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    pieces = tuple(t.take(order[bounds[p]:bounds[p + 1]]) for p in range(parts))
    return pieces if parts > 1 else pieces[0]


@ray.remote
def _reduce(fn, n_left: int, *pieces: pa.Table) -> pa.Table:
    left = pa.concat_tables(pieces[:n_left], promote_options="default")
    if n_left == len(pieces):
        return fn(left)
    return fn(left, pa.concat_tables(pieces[n_left:], promote_options="default"))


def _split_all(blocks: list, column: str, parts: int, prep) -> list[list]:
    """One split task per group of blocks (`_groups`), each returning `parts` pieces."""
    refs = [_split.options(num_returns=parts).remote(column, parts, prep, *g) for g in _groups(blocks, parts)]
    return [r if parts > 1 else [r] for r in refs]


def _groups(blocks: list, parts: int) -> list[list]:
    """Consecutive blocks in groups of up to BYTES_PER_PART bytes, or parts x MIN_PIECE_BYTES if
    more (a larger block is a group alone).

    A shuffle makes one object per (split task, partition): with a split task per block that is
    blocks x parts, and both grow with the data. Grouped it is at most bytes / MIN_PIECE_BYTES
    objects, each big enough to go to the object store rather than the driver's memory; the
    price is split tasks that grow with parts once parts x MIN_PIECE_BYTES > BYTES_PER_PART."""
    limit = max(BYTES_PER_PART, parts * MIN_PIECE_BYTES)
    groups, size = [], 0
    for block, n in zip(blocks, _block_bytes(blocks)):
        if not groups or size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(block)
        size += n
    return groups


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


def num_bytes(blocks: list) -> int:
    return sum(_block_bytes(blocks))


def _block_bytes(blocks: list) -> list[int]:
    return ray.get([_nbytes.remote(b) for b in blocks])


@ray.remote
def _sum(t: pa.Table, column: str) -> int:
    return int(pc.sum(t[column]).as_py() or 0)


@ray.remote
def _rows(t: pa.Table) -> int:
    return t.num_rows


@ray.remote
def _nbytes(t: pa.Table) -> int:
    return t.nbytes
