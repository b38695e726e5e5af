"""Exact and MinHash near-duplicate detection: which kept documents to drop, keeping the smallest id.

Following DESIGN.md "Dedup at scale", nothing is gathered on the driver:
1. signatures are computed inside map_batches and exploded to (bucket key, id) rows, one per LSH
   band plus one for the exact hash of the normalised text;
2. a hash-partitioned pass over the bucket key (shuffle.by_partition) turns each bucket into
   edges, a star onto the bucket's smallest id (k-1 edges, not k^2);
3. connected components over all edges run distributed (components.py, large/small-star);
4. every non-root is a duplicate: "exact" when it is the larger end of an exact edge, otherwise
   "near"; the smallest id of each component is kept. Decisions are (id, status) rows that the
   pipeline hash-joins back onto the documents (shuffle.join_status).
This equals resolving exact copies first and then near copies between the exact representatives:
the root of a component is the smallest exact representative in it.

    labels = find_duplicates(ds, cfg)            # blocks of (id, "dropped:exact_dedup:duplicate")
    labels_from_edges([("a", "b", "near")])       # the same decision in one process
    sig = minhash_signature(text, cfg)           # numpy uint64 array (no Ray)
"""
from __future__ import annotations

import functools
import hashlib
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.curation.components import EDGES, components_local, connected_components
from pipelines.curation.readers import KEPT
from pipelines.curation.shuffle import by_partition, num_rows, parts_for

_KEYS = pa.schema([("key", pa.string()), ("id", pa.string())])
_EDGES = pa.schema([("u", pa.string()), ("v", pa.string()), ("kind", pa.string())])
_LABELS = pa.schema([("id", pa.string()), ("kind", pa.string())])
_DECIDED = pa.schema([("id", pa.string()), ("status", pa.string())])
_STATUS = {"exact": "dropped:exact_dedup:duplicate", "near": "dropped:minhash_dedup:near_duplicate"}
_MINHASH_SEED = 1  # every worker must use the same permutations


def find_duplicates(ds, cfg, num_partitions: int = 2, progress=lambda s: None) -> list | None:
    """Blocks of (id, status) for every kept document that duplicates one with a smaller id
    (None when there is none). `ds` is a Ray dataset; the result is hash-partitioned by id."""
    keys = (ds.map_batches(_BucketKeys(cfg), batch_format="pyarrow", batch_size=cfg.batch_size)
            .materialize().to_arrow_refs())
    n_keys = num_rows(keys)
    if n_keys == 0:
        return None
    edges = by_partition(keys, "key", _bucket_edges, parts_for(n_keys, num_partitions))
    n_edges = num_rows(edges)
    progress(f"curate: dedup: {n_keys} bucket keys -> {n_edges} candidate edges")
    if n_edges == 0:
        return None
    parts = parts_for(n_edges, num_partitions)
    roots = connected_components(edges, parts, progress)
    return by_partition(edges + roots, "id", _decide, parts, prep=_label_rows)


def labels_from_edges(edges: list[tuple[str, str, str]]) -> dict[str, str]:
    """The same decision in one process (tests and small inputs): {id: status} of duplicates."""
    table = pa.Table.from_pydict({"u": [e[0] for e in edges], "v": [e[1] for e in edges],
                                  "changed": [0] * len(edges)}, schema=EDGES)
    roots = components_local(table)
    exact = _exact_rows(pa.Table.from_pylist([{"v": b} for a, b, k in edges if k == "exact"],
                                             schema=pa.schema([("v", pa.string())])))
    near = _near_rows(pa.Table.from_pydict({"id": list(roots), "root": list(roots.values())}))
    decided = _decide(pa.concat_tables([exact, near]))
    return dict(zip(decided["id"].to_pylist(), decided["status"].to_pylist()))


def minhash_signature(text: str, cfg) -> np.ndarray:
    """MinHash over lower-cased word n-grams (a text shorter than n is one shingle)."""
    from datasketch import MinHash

    words = text.lower().split()
    n = cfg.ngram_size
    shingles = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}
    template = _minhash_template(cfg.num_perm)
    mh = MinHash(num_perm=cfg.num_perm, seed=_MINHASH_SEED, permutations=template.permutations,
                 scheme=template.scheme)
    mh.update_batch([s.encode("utf-8") for s in shingles])
    return mh.hashvalues


@functools.cache
def _minhash_template(num_perm: int):
    """A MinHash whose permutations every signature reuses: drawing them costs about as much as
    hashing a 60-word document's shingles."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=_MINHASH_SEED)


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


def _bucket_edges(t: pa.Table) -> pa.Table:
    """Each bucket of one partition as a star onto its smallest id (k-1 edges for k ids)."""
    buckets: dict[str, set[str]] = defaultdict(set)
    for key, doc_id in zip(t["key"].to_pylist(), t["id"].to_pylist()):
        buckets[key].add(doc_id)
    u, v, kind = [], [], []
    for key, ids in buckets.items():
        first, *rest = sorted(ids)
        u += [first] * len(rest)
        v += rest
        kind += ["exact" if key.startswith("x:") else "near"] * len(rest)
    return pa.Table.from_pydict({"u": u, "v": v, "kind": kind}, schema=_EDGES)


def _label_rows(t: pa.Table) -> pa.Table:
    """Edge blocks give their exact copies, root blocks their non-root nodes."""
    return _exact_rows(t) if "kind" in t.column_names else _near_rows(t)


def _exact_rows(t: pa.Table) -> pa.Table:
    """An exact edge's larger end is an exact copy (each document has one exact bucket)."""
    if "kind" in t.column_names:
        t = t.filter(pc.equal(t["kind"], "exact"))
    return pa.Table.from_pydict({"id": t["v"], "kind": ["exact"] * t.num_rows}, schema=_LABELS)


def _near_rows(t: pa.Table) -> pa.Table:
    """A node that is not the root of its component duplicates a smaller id."""
    return pa.Table.from_pydict({"id": t["id"], "kind": ["near"] * t.num_rows}, schema=_LABELS)


def _decide(t: pa.Table) -> pa.Table:
    """One status per id: an exact copy is counted as exact, whatever else links it."""
    kinds: dict[str, str] = {}
    for doc_id, kind in zip(t["id"].to_pylist(), t["kind"].to_pylist()):
        if kinds.get(doc_id) != "exact":
            kinds[doc_id] = kind
    status = [_STATUS[k] for k in kinds.values()]
    return pa.Table.from_pydict({"id": list(kinds), "status": status}, schema=_DECIDED)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=10).hexdigest()
