"""Hash-partitioned map/reduce over Arrow blocks with Ray tasks: the building block of dedup.

A "blocks" value is a list of ObjectRefs of pyarrow Tables (what `ds.materialize().to_arrow_refs()`
gives, and what `ray.data.from_arrow_refs` takes back). `by_partition(blocks, column, fn, parts)`
splits the rows by a stable hash of `column` (`partition_of`) into `parts` partitions and calls
`fn(table)` once per partition on its concatenated pieces (one reduce task per partition): every
row sharing a value of `column` meets in the same call. Result i is partition i. The driver only
holds refs and small counts, never rows.

Per-task memory is bounded and the number of objects is linear in the data, at any size:
- a reduce task holds at most ROWS_PER_PART rows and BYTES_PER_PART bytes (`parts_for`);
- a split task reads at most BYTES_PER_PART bytes of input (a larger block alone) and cuts it into
  at most FANOUT = BYTES_PER_PART / MIN_PIECE_BYTES (128) pieces, so each piece is big enough for
  the object store (Ray keeps results under 100 KiB in the caller's memory) and objects per pass
  are at most bytes / MIN_PIECE_BYTES;
- with more partitions than FANOUT the split is a tree (`_fanout`): pass 1 cuts the rows into f
  ranges of partitions, pass 2 cuts each range into f sub-ranges, and so on, ceil(log_FANOUT(parts))
  passes of f <= FANOUT (1 pass up to 128 partitions, ~25M rows; 2 up to 16,384, ~3.3e9 rows;
  3 up to 2M). Pass 1 hashes each row once and carries its partition number in a column that the
  last pass drops; a split task returns its pieces' sizes, so the driver packs the next pass's
  inputs to BYTES_PER_PART (as results arrive, not after a barrier).
The previous design had one pass whose split tasks grew to parts x MIN_PIECE_BYTES (19 GB at
1e9 documents); `MAX_FANOUT = 10**9` still gives it (benchmarks/shuffle_scale.py compares both).

Plain tasks, not Ray Data's shuffle: in Ray 2.60 `groupby().map_groups`, `repartition(keys=)`
and `join` are one pass of map tasks of up to `shuffle_input_batch_bytes` that each return one
object per partition, so with bounded reduce tasks their objects grow with the square of the data
(measured in benchmarks/shuffle_scale.py; the reasoning and figures are in docs/scaling.md).

    edges = by_partition(blocks, "u", large_star, parts_for(n_rows, cpus))
    rows = join_status(doc_blocks, label_blocks, parts)   # a hash join by id
"""
from __future__ import annotations

import collections
import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

ROWS_PER_PART = 200_000  # bounds the rows one reduce task holds (Python objects per row)
BYTES_PER_PART = 32 << 20  # bounds the bytes one reduce or split task holds (documents are wide)
MIN_PIECE_BYTES = 256 << 10  # Ray keeps task results under 100 KiB in the caller's (driver's) memory
MAX_FANOUT: int | None = None  # pieces per split task; None: BYTES_PER_PART // MIN_PIECE_BYTES
_PART = "__shuffle_partition"  # partition number carried between the passes of a tree split

# Bookkeeping of what the shuffles of this process submitted (benchmarks read and clear it):
# size, split and reduce tasks, objects (their results), passes, the largest split-task input (bytes).
STATS: collections.Counter = collections.Counter()


def parts_for(rows: int, min_parts: int, nbytes: int = 0) -> int:
    """Enough partitions that none holds more than ROWS_PER_PART rows or BYTES_PER_PART bytes,
    at least `min_parts`."""
    return max(1, min_parts, -(-rows // ROWS_PER_PART), -(-nbytes // BYTES_PER_PART))


def partition_of(values: list[str], parts: int) -> np.ndarray:
    """A stable partition number per value (blake2b, so every worker agrees)."""
    digests = (hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest() for v in values)
    return np.fromiter((int.from_bytes(d, "big") % parts for d in digests), np.int64, len(values))


def by_partition(blocks: list, column: str, fn, parts: int, prep=None) -> list:
    """fn(partition table) for each hash partition of `column`; `prep` maps each block first."""
    pieces = _shuffle(blocks, column, parts, prep)
    return [_submit_reduce(fn, len(pieces[p]), pieces[p]) for p in range(parts)]


def join_by(left: list, right: list, column: str, fn, parts: int) -> list:
    """fn(left partition, right partition) for each hash partition of `column` on both sides."""
    lp, rp = _shuffle(left, column, parts, None), _shuffle(right, column, parts, None)
    return [_submit_reduce(fn, len(lp[p]), lp[p] + rp[p]) for p in range(parts)]


def join_status(docs: list, labels: list, parts: int) -> list:
    """Set `status` of the document rows whose id appears in the (id, status) label rows."""
    return join_by(docs, labels, "id", _apply_labels, parts)


def _apply_labels(docs: pa.Table, labels: pa.Table) -> pa.Table:
    new = dict(zip(labels["id"].to_pylist(), labels["status"].to_pylist()))
    status = [new.get(i, s) for i, s in zip(docs["id"].to_pylist(), docs["status"].to_pylist())]
    return docs.set_column(docs.schema.get_field_index("status"), "status", pa.array(status, pa.string()))


# ---------------------------------------------------------------- the split

def _fanout(parts: int) -> tuple[int, int]:
    """(passes, pieces per split task): the fewest passes of at most FANOUT pieces that reach
    `parts` partitions, and the smallest even fan-out f with f ** passes >= parts."""
    limit = max(2, MAX_FANOUT or BYTES_PER_PART // max(1, MIN_PIECE_BYTES))
    if parts <= limit:
        return 1, parts
    passes = 1
    while limit ** passes < parts:
        passes += 1
    f = max(2, math.ceil(parts ** (1 / passes)) - 1)
    while f ** passes < parts:
        f += 1
    return passes, f


class _Node:
    """A range [lo, hi) of partitions that one pass cuts into `k` sub-ranges (children). Its
    inputs arrive as (ref, bytes) and are packed into split tasks of up to `limit` bytes."""

    def __init__(self, lo: int, hi: int, fanout: int, last: bool):
        self.k = min(fanout, hi - lo)
        self.bounds = np.array([lo + (hi - lo) * i // self.k for i in range(self.k + 1)], np.int64)
        self.last = last
        self.limit = max(BYTES_PER_PART, self.k * MIN_PIECE_BYTES)
        self.buf, self.size = [], 0
        self.waiting = 0  # split tasks of the parent that will still deliver a piece here
        self.done = False
        self.children: list[_Node] = []
        self.out: list[list] = [[] for _ in range(self.k)] if last else []


def _shuffle(blocks: list, column: str, parts: int, prep) -> list[list]:
    """The pieces of each partition (refs), through ceil(log_FANOUT(parts)) split passes."""
    passes, fanout = _fanout(parts)
    STATS["shuffles"] += 1
    STATS["passes"] += passes
    tasks = collections.deque()  # (node, sizes ref, piece refs) of submitted non-last splits

    def make(lo: int, hi: int, depth: int) -> _Node:
        node = _Node(lo, hi, fanout, depth == passes - 1)
        if not node.last:
            node.children = [make(int(a), int(b), depth + 1) for a, b in zip(node.bounds, node.bounds[1:])]
        return node

    def submit(node: _Node) -> None:
        refs, nbytes = [r for r, _ in node.buf], sum(n for _, n in node.buf)
        node.buf, node.size = [], 0
        STATS["split_tasks"] += 1
        STATS["objects"] += node.k + (not node.last)
        STATS["max_split_bytes"] = max(STATS["max_split_bytes"], nbytes)
        first = node is root
        out = _split.options(num_returns=node.k + (not node.last)).remote(
            column, parts, node.bounds, node.last, prep if first else None, *refs)
        out = out if node.k + (not node.last) > 1 else [out]
        if node.last:
            for i, r in enumerate(out):
                node.out[i].append(r)
        else:
            tasks.append((node, out[-1], out[:-1]))
            for c in node.children:
                c.waiting += 1

    def add(node: _Node, ref, nbytes: int) -> None:
        if node.buf and node.size + nbytes > node.limit:
            submit(node)
        node.buf.append((ref, nbytes))
        node.size += nbytes

    def finish(node: _Node) -> None:
        if node.buf:
            submit(node)
        node.done = True
        for c in node.children:
            if c.waiting == 0 and not c.done:
                finish(c)

    root = make(0, parts, 0)
    STATS["size_tasks"] += len(blocks)
    STATS["objects"] += len(blocks)
    for ref, nbytes in zip(blocks, _block_bytes(blocks)):
        add(root, ref, nbytes)
    finish(root)
    while tasks:  # in submission order: the order Ray runs them in
        node, sizes_ref, piece_refs = tasks.popleft()
        for c, ref, nbytes in zip(node.children, piece_refs, ray.get(sizes_ref)):
            c.waiting -= 1
            add(c, ref, nbytes)
        for c in node.children:
            if node.done and c.waiting == 0 and not c.done:
                finish(c)
    leaves, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.last:
            leaves.append(node)
        stack.extend(reversed(node.children))
    return [refs for leaf in leaves for refs in leaf.out]


def _groups(blocks: list, parts: int) -> list[list]:
    """Consecutive blocks in groups of up to BYTES_PER_PART bytes, or parts x MIN_PIECE_BYTES if
    more (a larger block is a group alone): the split tasks of a one-pass shuffle into `parts`."""
    limit = max(BYTES_PER_PART, parts * MIN_PIECE_BYTES)
    groups, size = [], 0
    for block, n in zip(blocks, _block_bytes(blocks)):
        if not groups or size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(block)
        size += n
    return groups


@ray.remote
def _split(column: str, parts: int, bounds: np.ndarray, last: bool, prep, *tables: pa.Table):
    """Tables -> one piece per sub-range of `bounds` by partition of `column`: one stable sort,
    not a filter per piece (which costs rows x pieces). The first pass hashes `column` (after
    `prep`); a tree's later passes read the partition number it stored. Not the last pass: the
    pieces keep that number and a list of their (bytes) comes last."""
    t = pa.concat_tables([prep(b) if prep is not None else b for b in tables], promote_options="default")
    if _PART in t.column_names:
        part = t[_PART].to_numpy()
    else:
        part = partition_of(t[column].to_pylist(), parts)
        if not last:
            t = t.append_column(_PART, pa.array(part, pa.int64()))
    if last and _PART in t.column_names:
        t = t.drop_columns([_PART])
    k = len(bounds) - 1
    child = np.searchsorted(bounds, part, side="right") - 1 if k < parts else part
    order = np.argsort(child, kind="stable")
    cuts = np.searchsorted(child[order], np.arange(k + 1))
    pieces = [t.take(order[cuts[i]:cuts[i + 1]]) for i in range(k)]
    if not last:
        pieces.append([p.nbytes for p in pieces])
    return tuple(pieces) if len(pieces) > 1 else pieces[0]


def _submit_reduce(fn, n_left: int, pieces: list):
    STATS["reduce_tasks"] += 1
    STATS["objects"] += 1
    return _reduce.remote(fn, n_left, *pieces)


@ray.remote
def _reduce(fn, n_left: int, *pieces: pa.Table) -> pa.Table:
    left = pa.concat_tables(pieces[:n_left], promote_options="default")
    if n_left == len(pieces):
        return fn(left)
    return fn(left, pa.concat_tables(pieces[n_left:], promote_options="default"))


# ---------------------------------------------------------------- small reductions

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
