"""Exact and MinHash near-duplicate detection: which kept documents to drop, keeping the smallest id.

Following DESIGN.md "Dedup at scale", nothing is gathered on the driver:
1. one (node, exact hash, MinHash signature) row per kept document, made by the task that
   processed its part (parts.py) and read back from storage; the node is id + part;
2. a hash-partitioned pass (shuffle.by_partition) over bucket keys, one per LSH band plus the
   exact hash, exploded from the signature rows inside the split tasks, turns each bucket into
   candidate edges: a star onto the bucket's smallest id (k-1 edges, not k^2);
3. with `minhash_threshold` > 0, two hash joins bring both ends' signatures to each near edge,
   which survives only when the signatures agree on at least that fraction of positions (the
   MinHash estimate of their Jaccard similarity). This lets more, shorter bands find pairs of
   lower similarity without keeping the unrelated documents that also share a band;
4. connected components over all edges run distributed (components.py, large/small-star);
5. every non-root is a duplicate: "exact" when it is the larger end of an exact edge, otherwise
   "near"; the smallest id of each component is kept. Decisions are (id, status) rows that the
   pipeline hash-joins back onto the documents (shuffle.join_status).
This equals resolving exact copies first and then near copies between the exact representatives:
the root of a component is the smallest exact representative in it.

    sigs = signature_table(table, cfg, part="part-00000")   # per part, in the part's task
    labels = find_duplicates(sig_blocks, cfg)    # blocks of (node, "dropped:exact_dedup:duplicate")
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
from pipelines.curation.shuffle import by_partition, num_bytes, num_rows, parts_for

_SIGS = pa.schema([("id", pa.string()), ("exact", pa.string()), ("sig", pa.binary())])
_KEYS = pa.schema([("key", pa.string()), ("id", pa.string())])
_EDGES = pa.schema([("u", pa.string()), ("v", pa.string()), ("kind", pa.string())])
_LABELS = pa.schema([("id", pa.string()), ("kind", pa.string())])
_DECIDED = pa.schema([("id", pa.string()), ("status", pa.string())])
_STATUS = {"exact": "dropped:exact_dedup:duplicate", "near": "dropped:minhash_dedup:near_duplicate"}
_MINHASH_SEED = 1  # every worker must use the same permutations


def find_duplicates(sigs: list, cfg, num_partitions: int = 2, progress=lambda s: None,
                    phases=None) -> list | None:
    """Blocks of (node, status) for every kept document that duplicates one with a smaller id
    (None when there is none). `sigs` are blocks of `signature_table` rows (or a Ray dataset of
    document rows); the result is
    hash-partitioned by node. `phases` (phases.PhaseStore) keeps each phase's result in storage
    with a marker, so a rerun resumes after the last finished phase."""
    phases = phases or NoPhases()
    if hasattr(sigs, "map_batches"):  # a Ray dataset of document rows (tests, one-off use)
        sigs = (sigs.map_batches(functools.partial(signature_table, cfg=cfg), batch_format="pyarrow",
                                 batch_size=cfg.batch_size).materialize().to_arrow_refs())
    n_docs = num_rows(sigs)
    if n_docs == 0:
        return None
    n_keys = n_docs * (cfg.enabled("exact_dedup") + cfg.bands * cfg.enabled("minhash_dedup"))
    edges = phases.run("edges", lambda: by_partition(
        sigs, "key", _bucket_edges, parts_for(n_keys, num_partitions), prep=functools.partial(_bucket_keys, cfg)))
    n_edges = num_rows(edges)
    progress(f"curate: dedup: {n_keys} bucket keys -> {n_edges} candidate edges")
    if n_edges and cfg.enabled("minhash_dedup") and cfg.minhash_threshold > 0:
        edges = phases.run("verified", lambda: _verified(
            edges, sigs, cfg.minhash_threshold, parts_for(n_docs + n_edges, num_partitions, num_bytes(sigs))))
        n_edges = num_rows(edges)
        progress(f"curate: dedup: {n_edges} edges with estimated Jaccard >= {cfg.minhash_threshold}")
    if n_edges == 0:
        return None
    parts = parts_for(n_edges, num_partitions)
    roots = phases.run("components", lambda: connected_components(edges, parts, progress))
    return phases.run("labels", lambda: by_partition(edges + roots, "id", _decide, parts, prep=_label_rows))


class NoPhases:
    """Phases kept in memory only (no resume): what find_duplicates uses without a store."""

    def run(self, name: str, compute):
        return compute()


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


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate of two texts' Jaccard similarity: the fraction of equal positions."""
    return float(np.mean(sig_a == sig_b))


@functools.cache
def _minhash_template(num_perm: int):
    """A MinHash whose permutations every signature reuses: drawing them costs about as much as
    hashing a 60-word document's shingles."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=_MINHASH_SEED)


def exact_key(text: str) -> str:
    """Hash of the text with case and whitespace differences removed."""
    return _digest(" ".join(text.casefold().split()).encode("utf-8"))


NODE_SEP = "\x00"  # node = id + NODE_SEP + part: sorts by id first (NUL is the lowest character)


def signature_table(batch: pa.Table, cfg, part: str | None = None) -> pa.Table:
    """Kept rows to (node, exact key, signature) rows, the node naming the document and its
    part so that decisions find their way back to the part (`split_node`); the plain id when
    `part` is None. datasketch's hash
    values are below 2^32 (its _max_hash), so a signature travels as uint32: half the bytes."""
    ids, exact, sigs = [], [], []
    exact_on, near_on = cfg.enabled("exact_dedup"), cfg.enabled("minhash_dedup")
    if not (exact_on or near_on):
        return _SIGS.empty_table()
    for doc_id, status, text in zip(batch["id"].to_pylist(), batch["status"].to_pylist(),
                                    batch["text"].to_pylist()):
        if status != KEPT:
            continue
        ids.append(doc_id if part is None else f"{doc_id}{NODE_SEP}{part}")
        exact.append(exact_key(text) if exact_on else None)
        sigs.append(minhash_signature(text, cfg).astype(np.uint32).tobytes() if near_on else None)
    return pa.Table.from_pydict({"id": ids, "exact": exact, "sig": sigs}, schema=_SIGS)


def split_node(node: str) -> tuple[str, str]:
    """(document id, part name) of a dedup node."""
    doc_id, _, part = node.rpartition(NODE_SEP)
    return doc_id, part


def _signature(sig: bytes) -> np.ndarray:
    return np.frombuffer(sig, dtype=np.uint32)


def _bucket_keys(cfg, sigs: pa.Table) -> pa.Table:
    """Signature rows to (bucket key, id) rows: the exact key and one key per band."""
    keys, ids = [], []
    r = cfg.rows
    for doc_id, exact, sig in zip(sigs["id"].to_pylist(), sigs["exact"].to_pylist(), sigs["sig"].to_pylist()):
        if exact is not None:
            keys.append("x:" + exact)
            ids.append(doc_id)
        if sig is not None:
            values = _signature(sig)
            for band in range(cfg.bands):
                keys.append(f"{band}:" + _digest(values[band * r:(band + 1) * r].tobytes()))
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


# ---------------------------------------------------------------- verifying near edges

def _verified(edges: list, sigs: list, threshold: float, parts: int) -> list:
    """The edges whose ends' signatures agree on >= threshold of positions (exact edges pass).
    Two hash joins: by u, each edge picks up u's signature; by v, it meets v's and is decided."""
    with_u = by_partition(edges + sigs, "u", _attach_u, parts, prep=_sig_as("u"))
    return by_partition(with_u + sigs, "v", functools.partial(_similar_enough, threshold), parts,
                        prep=_sig_as("v"))


def _sig_as(column: str):
    """prep for a join: signature blocks become (column, sig_<column>) rows, edge blocks pass."""
    return functools.partial(_rename_sig_block, column)


def _rename_sig_block(column: str, t: pa.Table) -> pa.Table:
    if "exact" not in t.column_names:  # an edge block
        return t
    return pa.table({column: t["id"], f"sig_{column}": t["sig"]})


def _attach_u(t: pa.Table) -> pa.Table:
    """Edge rows of one u-partition with u's signature (exact edges need none)."""
    sig_of = _lookup(t, "u", "sig_u")
    if "v" not in t.column_names:  # this partition holds no edge
        return _EDGES.empty_table().append_column("sig_u", pa.array([], pa.binary()))
    edges = t.filter(pc.is_valid(t["v"])).select(["u", "v", "kind"])
    sig_u = [sig_of.get(u) if k == "near" else None
             for u, k in zip(edges["u"].to_pylist(), edges["kind"].to_pylist())]
    return edges.append_column("sig_u", pa.array(sig_u, pa.binary()))


def _similar_enough(threshold: float, t: pa.Table) -> pa.Table:
    """Edge rows of one v-partition whose signatures agree enough, without the signatures."""
    sig_of = _lookup(t, "v", "sig_v")
    if "u" not in t.column_names:  # this partition holds no edge
        return _EDGES.empty_table()
    edges = t.filter(pc.is_valid(t["u"]))
    keep = [k == "exact" or estimated_jaccard(_signature(su), _signature(sig_of[v])) >= threshold
            for v, k, su in zip(edges["v"].to_pylist(), edges["kind"].to_pylist(), edges["sig_u"].to_pylist())]
    return edges.filter(pa.array(keep, pa.bool_())).select(["u", "v", "kind"])


def _lookup(t: pa.Table, column: str, sig_column: str) -> dict[str, bytes]:
    """{id: signature} from the signature rows of a joined partition."""
    if sig_column not in t.column_names:
        return {}
    rows = t.filter(pc.is_valid(t[sig_column]))
    return dict(zip(rows[column].to_pylist(), rows[sig_column].to_pylist()))


# ---------------------------------------------------------------- decisions

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
