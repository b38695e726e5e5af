"""Held-out split and mixing by source weight, both decided per document by a hash of its id.

Split: a kept document goes to val when u(seed, id) < val_fraction, else to train.
Mixing (train only; val stays an unweighted sample of every source): a train document of a
source with weight w is written floor(w) times, plus once more when v(seed, id) < w - floor(w).
So weight 2.0 writes each document twice, 0.5 keeps about half of them (the same half on every
run), 1.0 (the default for a source not named in `source_weights`) changes nothing and 0 drops
the source from train. A train document written 0 times becomes `dropped:mix:source_weight`, so
input == kept + dropped + errored still holds; `copies` says how many times a kept row is
written. The two hashes are independent (different salts), so the val sample does not bias the
train sample. This is Dolma's and datatrove's way of up/down-sampling by whole documents.

    table = AssignSplit(seed=0, val_fraction=0.05, weights={"web": 0.5, "code": 2.0})(table)
    # adds columns split ("train" / "val" / "") and copies (int64)
"""
from __future__ import annotations

import hashlib
import math

import pyarrow as pa

from pipelines.curation.formats import KEPT

MIX_DROPPED = "dropped:mix:source_weight"


def unit_hash(doc_id: str, seed: int, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the document id, the seed and a salt."""
    digest = hashlib.blake2b(f"{seed}:{salt}{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def copies_of(doc_id: str, weight: float, seed: int) -> int:
    """How many times a train document of a source with `weight` is written (see module doc)."""
    whole = math.floor(weight)
    return whole + (1 if unit_hash(doc_id, seed, "mix:") < weight - whole else 0)


class AssignSplit:
    """map_batches function: adds `split` and `copies`; a kept row mixed out becomes dropped."""

    def __init__(self, seed: int, val_fraction: float, weights: dict[str, float] | None = None):
        self.seed, self.val_fraction, self.weights = seed, val_fraction, dict(weights or {})

    def __call__(self, batch: pa.Table) -> pa.Table:
        statuses = batch["status"].to_pylist()
        placed = [self.place(*r) for r in zip(batch["id"].to_pylist(), statuses, batch["source"].to_pylist())]
        split, copies = [p[0] for p in placed], [p[1] for p in placed]
        statuses = [MIX_DROPPED if st == KEPT and not sp else st for st, sp in zip(statuses, split)]
        batch = batch.set_column(batch.schema.get_field_index("status"), "status", pa.array(statuses, pa.string()))
        return batch.append_column("split", pa.array(split, pa.string())).append_column(
            "copies", pa.array(copies, pa.int64()))

    def place(self, doc_id: str, status: str, source: str) -> tuple[str, int]:
        """(split, copies) of one row: ("", 0) for a row that is not kept or is mixed out."""
        if status != KEPT:
            return "", 0
        if unit_hash(doc_id, self.seed) < self.val_fraction:
            return "val", 1
        n = copies_of(doc_id, self.weights.get(source, 1.0), self.seed)
        return ("train", n) if n else ("", 0)


def repeat_rows(table: pa.Table) -> pa.Table:
    """Each row `copies` times (rows with 0 copies vanish), in order: the weighted train shard."""
    counts = table["copies"].to_pylist()
    return table.take(pa.array([i for i, n in enumerate(counts) for _ in range(n)], pa.int64()))
