"""Distributed connected components: large-star / small-star over an edge dataset (no driver state).

Kiveris et al. 2014, "Connected Components in MapReduce and Beyond": alternate two steps, each
one hash-partitioned pass over the edges (shuffle.by_partition), until neither changes an edge.

- large-star: every node u links each larger neighbour v straight to m = min(N(u) + u);
- small-star: every node u links itself and each smaller neighbour to m = min of those.

At the fixed point every node has at most one smaller neighbour, and a node with larger
neighbours has none smaller: each component is a star whose centre is its smallest id. Labels
are then (id, root) for every non-root node. Each step only holds one partition of the edges.

    roots = connected_components(edge_blocks, parts)  # blocks of (id, root), non-roots only
    roots = components_local(edge_table)            # the same steps in one process (tests)
"""
from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

from pipelines.curation.shuffle import by_partition, total

EDGES = pa.schema([("u", pa.string()), ("v", pa.string()), ("changed", pa.int64())])
ROOTS = pa.schema([("id", pa.string()), ("root", pa.string())])
MAX_ROUNDS = 64  # the algorithm needs O(log^2 n) rounds; this only guards against a bug


def _edges(pairs: list[tuple[str, str]], changed: list[int]) -> pa.Table:
    return pa.Table.from_pydict({"u": [p[0] for p in pairs], "v": [p[1] for p in pairs],
                                 "changed": changed}, schema=EDGES)


def both_directions(t: pa.Table) -> pa.Table:
    """(u, v) -> (u, v) and (v, u): large-star groups every neighbour under each end."""
    u, v = t["u"].to_pylist(), t["v"].to_pylist()
    return _edges(list(zip(u + v, v + u)), [0] * (2 * len(u)))


def larger_first(t: pa.Table) -> pa.Table:
    """(u, v) -> (max, min): small-star groups the smaller neighbours under the larger end."""
    pairs = [(max(a, b), min(a, b)) for a, b in zip(t["u"].to_pylist(), t["v"].to_pylist())]
    return _edges(pairs, [0] * len(pairs))


def _neighbours(t: pa.Table) -> dict[str, set[str]]:
    nbrs: dict[str, set[str]] = defaultdict(set)
    for u, v in zip(t["u"].to_pylist(), t["v"].to_pylist()):
        if u != v:
            nbrs[u].add(v)
    return nbrs


def large_star(t: pa.Table) -> pa.Table:
    """Per node u: (v, m) for each neighbour v > u, m = min(N(u) + u); changed when m < u."""
    pairs, changed = [], []
    for u, nbrs in _neighbours(t).items():
        m = min(min(nbrs), u)
        for v in sorted(n for n in nbrs if n > u):
            pairs.append((v, m))
            changed.append(int(m != u))
    return _edges(pairs, changed)


def small_star(t: pa.Table) -> pa.Table:
    """Per node u with smaller neighbours N: (x, m) for x in N + u, x != m, m = min(N)."""
    pairs, changed = [], []
    for u, smaller in _neighbours(t).items():
        m = min(smaller)
        for x in sorted(smaller | {u}):
            if x != m:
                pairs.append((x, m))
                changed.append(int(x != u))  # (u, m) existed; (x, m) for another x is new
    return _edges(pairs, changed)


def roots_of(t: pa.Table) -> pa.Table:
    """At the fixed point, (larger, smaller) edges are (leaf, root): one row per leaf."""
    roots = {u: min(n) for u, n in _neighbours(t).items()}
    return pa.Table.from_pydict({"id": list(roots), "root": list(roots.values())}, schema=ROOTS)


def connected_components(edges: list, parts: int, progress=lambda s: None) -> list:
    """Blocks of (id, root) for every node that is not the smallest of its component.

    `edges` are blocks (ObjectRefs of tables with u, v); see shuffle.py."""
    for rounds in range(1, MAX_ROUNDS + 1):
        edges = by_partition(edges, "u", large_star, parts, prep=both_directions)
        large = total(edges, "changed")
        edges = by_partition(edges, "u", small_star, parts, prep=larger_first)
        small = total(edges, "changed")
        progress(f"curate: components round {rounds}: {large} + {small} edges changed")
        if not large and not small:
            return by_partition(edges, "u", roots_of, parts)
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def components_local(t: pa.Table) -> dict[str, str]:
    """The same algorithm in one process (one partition): {id: root} for non-root nodes."""
    for _ in range(MAX_ROUNDS):
        t = large_star(both_directions(t))
        large = sum(t["changed"].to_pylist())
        t = small_star(larger_first(t))
        if not large and not sum(t["changed"].to_pylist()):
            roots = roots_of(t)
            return dict(zip(roots["id"].to_pylist(), roots["root"].to_pylist()))
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
