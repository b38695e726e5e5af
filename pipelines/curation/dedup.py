"""Exact and MinHash near-duplicate detection: which kept documents to drop, keeping the smallest id.

Following DESIGN.md "Dedup at scale": signatures are computed inside map_batches and exploded to
(bucket key, id) rows, one per LSH band plus one for the exact hash of the normalised text; one
groupby over the bucket key turns each bucket into edges (a star onto the bucket's smallest id,
k-1 edges, not k^2). No step sees all signatures. The edges (only duplicate candidates, far fewer
than documents) are joined into connected components with union-find on the driver; a later
issue replaces that with a distributed large-star/small-star loop for web-scale edge counts.

Exact duplicates are resolved first; near-duplicate edges then connect the surviving exact
representatives, so a document dropped as an exact copy is never also counted as a near copy.

    labels = find_duplicates(ds, cfg)           # {id: "dropped:exact_dedup:duplicate", ...}
    sig = minhash_signature(text, cfg)           # numpy uint64 array (no Ray)
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from pipelines.curation.readers import KEPT

_KEYS = pa.schema([("key", pa.string()), ("id", pa.string())])
_EDGES = pa.schema([("a", pa.string()), ("b", pa.string()), ("kind", pa.string())])
_MINHASH_SEED = 1  # every worker must use the same permutations


def find_duplicates(ds, cfg, num_partitions: int = 2) -> dict[str, str]:
    """The new status of every kept document that duplicates one with a smaller id."""
    keys = ds.map_batches(_BucketKeys(cfg), batch_format="pyarrow", batch_size=cfg.batch_size).materialize()
    if keys.count() == 0:
        return {}
    edges = (keys.groupby("key", num_partitions=num_partitions)
             .map_groups(_bucket_edges, batch_format="pyarrow").take_all())
    return labels_from_edges([(e["a"], e["b"], e["kind"]) for e in edges])


def labels_from_edges(edges: list[tuple[str, str, str]]) -> dict[str, str]:
    """Union-find over exact edges, then over near edges between exact representatives."""
    exact = _UnionFind()
    for a, b, kind in edges:
        if kind == "exact":
            exact.union(a, b)
    near = _UnionFind()
    for a, b, kind in edges:
        if kind == "near":
            near.union(exact.find(a), exact.find(b))
    labels = {x: "dropped:exact_dedup:duplicate" for x in exact.parent if exact.find(x) != x}
    labels.update({x: "dropped:minhash_dedup:near_duplicate" for x in near.parent if near.find(x) != x})
    return labels


def minhash_signature(text: str, cfg) -> np.ndarray:
    """MinHash over lower-cased word n-grams (a text shorter than n is one shingle)."""
    from datasketch import MinHash

    words = text.lower().split()
    n = cfg.ngram_size
    shingles = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}
    mh = MinHash(num_perm=cfg.num_perm, seed=_MINHASH_SEED)
    mh.update_batch([s.encode("utf-8") for s in shingles])
    return mh.hashvalues


def exact_key(text: str) -> str:
    """Hash of the text with case and whitespace differences removed."""
    return _digest(" ".join(text.casefold().split()).encode("utf-8"))


class _BucketKeys:
    """map_batches function: kept rows to (bucket key, id) rows, exact key and one per band."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys, ids = [], []
        exact_on, near_on = self.cfg.enabled("exact_dedup"), self.cfg.enabled("minhash_dedup")
        for doc_id, status, text in zip(batch["id"].to_pylist(), batch["status"].to_pylist(),
                                        batch["text"].to_pylist()):
            if status != KEPT:
                continue
            if exact_on:
                keys.append("x:" + exact_key(text))
                ids.append(doc_id)
            if near_on:
                sig = minhash_signature(text, self.cfg)
                r = self.cfg.rows
                for band in range(self.cfg.bands):
                    keys.append(f"{band}:" + _digest(sig[band * r:(band + 1) * r].tobytes()))
                    ids.append(doc_id)
        return pa.Table.from_pydict({"key": keys, "id": ids}, schema=_KEYS)


def _bucket_edges(group: pa.Table) -> pa.Table:
    """A bucket's ids as a star onto its smallest id; singleton buckets give no edges."""
    ids = sorted(set(group["id"].to_pylist()))
    key = group["key"][0].as_py() if group.num_rows else ""
    kind = "exact" if key.startswith("x:") else "near"
    rest = ids[1:]
    return pa.Table.from_pydict({"a": ids[:1] * len(rest), "b": rest, "kind": [kind] * len(rest)},
                                schema=_EDGES)


class _UnionFind:
    """Union-find whose root is always the smallest member, so the kept document is the smallest id."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=10).hexdigest()
