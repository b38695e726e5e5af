"""Dedup's shuffle side by side with Ray Data's operators, at real sizes and at simulated scale.

The input is what fuzzy dedup shuffles: for N documents of the planted-duplicate corpus
(_dedup_scale.write_dedup_corpus), their real MinHash signatures (dedup.minhash_signature, 14
bands x 8 rows) exploded into N x 15 (bucket key, id) rows (dedup._bucket_keys), in blocks of
10,000 documents' keys (one per corpus file). Built once per N and cached under --cache.

The bucket-edges shuffle (group by key, each bucket -> a star onto its smallest id,
dedup._bucket_edges) runs on each engine:
  ours_1pass     pipelines/curation/shuffle.py as it was: one split pass (shuffle.MAX_FANOUT = 1e9)
  ours_tree      shuffle.py now: split passes of at most 128 pieces (a tree past 128 partitions)
  ours_tree_fN   the same with at most N pieces per split (more passes at real sizes)
  rd_map_groups  Ray Data ds.groupby("key", num_partitions=P).map_groups(fn)      (shuffle_v2)
  rd_repart      Ray Data ds.repartition(P, keys=["key"]).map_batches(fn, batch_size=None) (shuffle_v2)
  rd_repart_disk the same with DataContext.use_disk_based_hash_shuffle (map output in files)
  rd_map_groups_hash / rd_map_groups_sort   map_groups under the hash_shuffle (aggregator actors)
                 and sort_shuffle_pull_based strategies
and the label join-back (documents (id, status, text) left-join (id, status) labels, the
labels being the ids the edges mark) on:
  ours_join_1pass / ours_join_tree   shuffle.join_status, one pass / tree
  rd_join / rd_join_disk             Ray Data ds.join(labels, "left_outer", num_partitions=P) + coalesce
Every engine gets the same partitions P (shuffle.parts_for) and the same per-task input budget
(Ray Data: DataContext.shuffle_input_batch_bytes = shuffle.BYTES_PER_PART; its default is 1 GiB).
Each run is its own process with a fresh embedded Ray (ray.init(address="local", num_cpus=2)),
and its output is checked equal to ours_tree's (edges: the sorted (u, v, kind) rows; join: row
count and every changed (id, status)).

Simulation (--scales): scale s divides ROWS_PER_PART, BYTES_PER_PART, MIN_PIECE_BYTES, Ray Data's
input batch, the input block size and Ray's inline-result limit (max_direct_call_object_size,
so pieces go to the object store as real-size ones do) by s, so that N documents get the
partitions, split tasks, blocks and objects of s x N documents at the real budgets (per-task
data 1/s of the real one).

Figures per run: wall s; CPU s of all processes of the run's Ray (driver, GCS, raylet, workers;
psutil); largest worker RSS and private (RSS - shared: heap, not mapped object-store pages),
sampled every 0.5 s; the largest task input (our bookkeeping; Ray Data's map-task estimate);
tasks and objects per shuffle (bookkeeping: task results), plasma objects created and spilled
bytes (the raylet's object-store counters).

    python benchmarks/shuffle_scale.py --docs 100000 300000 1000000          # engines, real budgets
    python benchmarks/shuffle_scale.py --docs 1000000 --scales 1 32 1000 --engines ours_1pass ours_tree rd_repart
    python benchmarks/shuffle_scale.py ... --write     # also (re)write its RESULTS.md section
Runs take minutes each on 2 cores (--timeout bounds one run); results append to --out (jsonl).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _curation_bench import REPO, TreeCpu, load, table  # noqa: E402

DOCS_PER_BLOCK = 10_000  # one corpus file: what a read task gives dedup
RAY_DEFAULT_BATCH = 1 << 30  # DataContext.shuffle_input_batch_bytes default in Ray 2.60
INLINE_BYTES = 100 << 10  # Ray's max_direct_call_object_size default (scaled too in simulations)
EDGE_ENGINES = ["ours_1pass", "ours_tree", "rd_map_groups", "rd_repart", "rd_repart_disk",
                "rd_map_groups_hash", "rd_map_groups_sort"]
JOIN_ENGINES = ["ours_join_1pass", "ours_join_tree", "rd_join", "rd_join_disk"]
NAMES = {"ours_1pass": "hand-written, one pass (before)", "ours_tree": "hand-written, tree (now)",
         "rd_map_groups": "Ray Data groupby.map_groups", "rd_repart": "Ray Data repartition(keys)+map_batches",
         "rd_repart_disk": "Ray Data repartition(keys)+map_batches, disk shuffle",
         "rd_map_groups_hash": "Ray Data map_groups, hash_shuffle (actors)",
         "rd_map_groups_sort": "Ray Data map_groups, sort_shuffle_pull_based",
         "ours_join_1pass": "join_status, one pass (before)", "ours_join_tree": "join_status, tree (now)",
         "rd_join": "Ray Data join (left_outer)", "rd_join_disk": "Ray Data join, disk shuffle"}


# ---------------------------------------------------------------- the corpus (cached)

def build_corpus(cache: Path, n: int) -> Path:
    """cache/<n>/: keys-*.parquet (bucket key, id), docs-*.parquet (id, status, text), one per
    corpus file, and meta.json. Signatures are computed in Ray tasks on both cores."""
    folder = cache / str(n)
    if (folder / "meta.json").exists():
        return folder
    import ray

    from _dedup_scale import write_dedup_corpus

    (folder / "jsonl").mkdir(parents=True, exist_ok=True)
    t = time.time()
    write_dedup_corpus(folder / "jsonl", n)
    start_ray(num_cpus=2)
    files = sorted((folder / "jsonl").glob("*.jsonl"))
    rows = ray.get([_corpus_file.remote(str(f), str(folder)) for f in files])
    ray.shutdown()
    for f in files:
        f.unlink()
    (folder / "jsonl").rmdir()
    meta = {"docs": sum(r[0] for r in rows), "keys": sum(r[1] for r in rows), "files": len(files),
            "build_s": round(time.time() - t)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _corpus_file_impl(path: str, folder: str) -> tuple[int, int]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.curation import CurateConfig
    from pipelines.curation.dedup import _bucket_keys, exact_key, minhash_signature

    cfg = CurateConfig(steps=["exact_dedup", "minhash_dedup"])
    docs = [json.loads(line) for line in open(path, encoding="utf-8")]
    ids, texts = [d["id"] for d in docs], [d["text"] for d in docs]
    sigs = pa.table({"id": ids, "exact": [exact_key(x) for x in texts],
                     "sig": [minhash_signature(x, cfg).astype(np.uint32).tobytes() for x in texts]})
    keys = _bucket_keys(cfg, sigs)
    name = Path(path).stem
    pq.write_table(keys, f"{folder}/keys-{name}.parquet")
    pq.write_table(pa.table({"id": ids, "status": ["kept"] * len(ids), "text": texts}),
                   f"{folder}/docs-{name}.parquet")
    return len(ids), keys.num_rows


def start_ray(num_cpus: int = 2, tries: int = 3) -> None:
    """A fresh embedded Ray of num_cpus, never another cluster (retried: under load a start can
    time out)."""
    import logging

    import ray
    import ray.data

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for attempt in range(tries):
        try:
            ray.init(address="local", num_cpus=num_cpus, logging_level=logging.WARNING)
            break
        except Exception as exc:  # noqa: BLE001 - "node timed out during startup" under load
            print(f"ray start failed ({exc}); retry {attempt + 1}/{tries}", file=sys.stderr, flush=True)
            ray.shutdown()
            time.sleep(10)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _remote(fn):
    import ray

    return ray.remote(fn)


class _Lazy:
    """ray.remote applied on first use (the module is imported before Ray starts)."""

    def __init__(self, fn):
        self.fn, self.r = fn, None

    def remote(self, *a):
        self.r = self.r or _remote(self.fn)
        return self.r.remote(*a)


_corpus_file = _Lazy(_corpus_file_impl)


def load_blocks(folder: Path, prefix: str, scale: int, take_rows=None) -> list:
    """The cached tables as object-store blocks, each file cut into `scale` blocks."""
    import numpy as np
    import pyarrow.parquet as pq
    import ray

    blocks = []
    for f in sorted(folder.glob(f"{prefix}-*.parquet")):
        t = pq.read_table(f)
        cuts = np.linspace(0, t.num_rows, min(scale, t.num_rows) + 1).astype(int)
        for a, b in zip(cuts, cuts[1:]):
            blocks.append(ray.put(t.take(np.arange(a, b))))  # a compact copy, not a slice
    return blocks


# ---------------------------------------------------------------- measurements

def store_stats() -> dict:
    """Object-store counters of the local raylet (cumulative since it started)."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    s = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address)).store_stats
    return {"created": s.cumulative_created_objects, "created_bytes": s.cumulative_created_bytes,
            "spilled_bytes": s.spilled_bytes_total, "spilled_objects": s.spilled_objects_total,
            "used": s.object_store_bytes_used}


class StorePeak:
    """Samples the object store's used bytes every second."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(1.0):
            try:
                self.peak = max(self.peak, store_stats()["used"])
            except Exception:  # noqa: BLE001 - a sample missed under load
                pass

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


RD_COUNTS: dict = {}


def count_ray_data_tasks() -> None:
    """Count Ray Data's shuffle map tasks (and the objects they return), their largest input, and
    reduce tasks, by wrapping the operators' submit methods in this driver."""
    from ray.data._internal.execution.operators.shuffle_operators import (
        disk_shuffle_map_operator as dm, disk_shuffle_reduce_operator as dr,
        shuffle_map_operator as sm, shuffle_reduce_operator as sr)

    def wrap_map(cls, returns):
        orig = cls._submit_shuffle_map_task

        def submit(self, block_refs, input_bundles, estimated_bytes=0, target_node_id=None):
            RD_COUNTS["map_tasks"] = RD_COUNTS.get("map_tasks", 0) + 1
            RD_COUNTS["objects"] = RD_COUNTS.get("objects", 0) + returns(self)
            RD_COUNTS["fetches"] = RD_COUNTS.get("fetches", 0) + self._num_partitions
            RD_COUNTS["max_task_bytes"] = max(RD_COUNTS.get("max_task_bytes", 0), estimated_bytes)
            return orig(self, block_refs, input_bundles, estimated_bytes, target_node_id)
        cls._submit_shuffle_map_task = submit

    def wrap_reduce(cls):
        orig = cls._submit_reduce_task

        def submit(self, *a, **k):
            RD_COUNTS["reduce_tasks"] = RD_COUNTS.get("reduce_tasks", 0) + 1
            RD_COUNTS["objects"] = RD_COUNTS.get("objects", 0) + 1  # at least one output block
            return orig(self, *a, **k)
        cls._submit_reduce_task = submit

    wrap_map(sm.ShuffleMapOp, lambda op: op._num_partitions + 1)
    wrap_map(dm.DiskHashShuffleMapOp, lambda op: 1)
    wrap_reduce(sr.ShuffleReduceOp)
    wrap_reduce(dr.DiskHashShuffleReduceOp)


# ---------------------------------------------------------------- engines

def _max_fanout(engine: str) -> int | None:
    """ours_1pass: one pass (the previous design); ours_tree_fN: passes of at most N pieces (more
    passes at real sizes); ours_tree: the default (BYTES_PER_PART // MIN_PIECE_BYTES)."""
    if engine.endswith("1pass"):
        return 10**9
    return int(engine.rsplit("_f", 1)[1]) if "_tree_f" in engine else None


def _ray_data_context(engine: str, batch_bytes: int):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_strategy = {"rd_map_groups_hash": "hash_shuffle",
                            "rd_map_groups_sort": "sort_shuffle_pull_based"}.get(engine, "shuffle_v2")
    ctx.use_disk_based_hash_shuffle = engine.endswith("_disk")
    ctx.shuffle_input_batch_bytes = batch_bytes
    return ctx


def run_edges(engine: str, blocks: list, parts: int, batch_bytes: int) -> list:
    """Refs of the edge tables."""
    import ray

    from pipelines.curation import shuffle
    from pipelines.curation.dedup import _bucket_edges

    if engine.startswith("ours"):
        shuffle.MAX_FANOUT = _max_fanout(engine)
        refs = shuffle.by_partition(blocks, "key", _bucket_edges, parts)
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        return refs
    _ray_data_context(engine, batch_bytes)
    ds = ray.data.from_arrow_refs(blocks)
    if engine.startswith("rd_map_groups"):
        ds = ds.groupby("key", num_partitions=parts).map_groups(_bucket_edges, batch_format="pyarrow")
    else:
        ds = ds.repartition(parts, keys=["key"]).map_batches(_bucket_edges, batch_format="pyarrow", batch_size=None)
    return ds.materialize().to_arrow_refs()


def _coalesce_status(t):
    import pyarrow.compute as pc

    status = pc.coalesce(t["label"], t["status"])
    return t.drop_columns(["label"]).set_column(t.schema.get_field_index("status"), "status", status)


def run_join(engine: str, docs: list, labels: list, parts: int, batch_bytes: int) -> list:
    import ray

    from pipelines.curation import shuffle

    if engine.startswith("ours"):
        shuffle.MAX_FANOUT = _max_fanout(engine)
        refs = shuffle.join_status(docs, labels, parts)
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        return refs
    _ray_data_context(engine, batch_bytes)
    left = ray.data.from_arrow_refs(docs)
    right = ray.data.from_arrow_refs(labels).rename_columns({"status": "label"})
    ds = left.join(right, join_type="left_outer", num_partitions=parts, on=("id",))
    return ds.map_batches(_coalesce_status, batch_format="pyarrow").materialize().to_arrow_refs()


def _changed_impl(t):
    """(rows, the (id, status) rows that are not 'kept') of one output block."""
    import pyarrow.compute as pc

    changed = t.filter(pc.not_equal(t["status"], "kept")).select(["id", "status"])
    return t.num_rows, changed


_changed = _Lazy(_changed_impl)


# ---------------------------------------------------------------- one run (its own process)

def one(spec: dict) -> dict:
    """Run one engine on one corpus at one scale in this process; returns the figures."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from pipelines.curation import shuffle

    folder, s, engine = Path(spec["folder"]), spec["scale"], spec["engine"]
    meta = json.loads((folder / "meta.json").read_text())
    shuffle.ROWS_PER_PART //= s
    shuffle.BYTES_PER_PART //= s
    shuffle.MIN_PIECE_BYTES //= s
    batch_bytes = max(1, shuffle.BYTES_PER_PART)
    is_join = engine.startswith(("ours_join", "rd_join"))
    if s > 1:  # results under this size stay in the caller's memory, not the object store
        os.environ["RAY_max_direct_call_object_size"] = str(max(1, INLINE_BYTES // s))
    timer = threading.Timer(spec["timeout"], _give_up, args=(spec,))
    timer.daemon = True
    timer.start()
    start_ray(num_cpus=2)
    count_ray_data_tasks()
    if is_join:
        docs = load_blocks(folder, "docs", s)
        ref = pq.read_table(folder / "labels.parquet")
        cuts = np.linspace(0, ref.num_rows, max(1, ref.num_rows * s // 25_000) + 1).astype(int)
        labels = [ray.put(ref.take(np.arange(a, b))) for a, b in zip(cuts, cuts[1:])]
        parts = shuffle.parts_for(meta["docs"], 2, shuffle.num_bytes(docs))
        inputs = len(docs) + len(labels)
    else:
        blocks = load_blocks(folder, "keys", s)
        parts = shuffle.parts_for(meta["keys"], 2)
        inputs = len(blocks)
    time.sleep(2)
    from _dedup_scale import PeakWorkerMemory

    shuffle.STATS.clear()
    RD_COUNTS.clear()
    before = store_stats()
    import psutil

    driver_before = psutil.Process().memory_info().rss / 2**20
    with PeakWorkerMemory() as mem, TreeCpu() as cpu, StorePeak() as store:
        started = time.time()
        out = (run_join(engine, docs, labels, parts, batch_bytes) if is_join
               else run_edges(engine, blocks, parts, batch_bytes))
        wall = time.time() - started
    after = store_stats()
    counts = dict(shuffle.STATS) if engine.startswith("ours") else dict(RD_COUNTS)
    # check the output against ours_tree's (written by the first run that has none)
    if is_join:
        got = ray.get([_changed.remote(r) for r in out])
        rows = sum(g[0] for g in got)
        changed = pa.concat_tables([g[1] for g in got])
        equal = rows == meta["docs"] and _rows_of(changed, ["id", "status"]) == _rows_of(ref, ["id", "status"])
    else:
        edges = pa.concat_tables(ray.get(out)).select(["u", "v", "kind"])
        path = folder / "edges.parquet"
        if not path.exists() and engine == "ours_tree" and s == 1:
            pq.write_table(edges, path)
            v = edges.group_by("v").aggregate([("kind", "min")])  # exact wins over near
            status = [("dropped:exact_dedup:duplicate" if k == "exact" else "dropped:minhash_dedup:near_duplicate")
                      for k in v["kind_min"].to_pylist()]
            pq.write_table(pa.table({"id": v["v"], "status": status}), folder / "labels.parquet")
        equal = path.exists() and _rows_of(edges, ["u", "v", "kind"]) == _rows_of(pq.read_table(path), ["u", "v", "kind"])
        rows = edges.num_rows
    ray.shutdown()
    return {**spec, "docs": meta["docs"], "keys": meta["keys"], "parts": parts, "inputs": inputs,
            "passes": shuffle._fanout(parts)[0] if engine.startswith("ours") else 1,
            "wall_s": wall, "cpu_s": cpu.seconds, "cpu_workers_s": cpu.by_kind["workers"], "cpu_driver_s": cpu.by_kind["driver"],
            "worker_rss_mb": mem.peak_mb, "worker_private_mb": mem.peak_private_mb, "driver_mb": mem.driver_peak_mb, "driver_before_mb": driver_before,
            "counts": counts, "plasma_created": after["created"] - before["created"],
            "plasma_created_mb": (after["created_bytes"] - before["created_bytes"]) / 2**20,
            "spilled_mb": (after["spilled_bytes"] - before["spilled_bytes"]) / 2**20,
            "store_peak_mb": store.peak / 2**20, "output_rows": rows, "equal": bool(equal),
            "load": load(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _rows_of(t, columns: list) -> list:
    """The rows as sorted tuples (engines differ in row order, chunking and string types)."""
    return sorted(zip(*[t[c].to_pylist() for c in columns]))


def _give_up(spec: dict) -> None:
    print("RESULT " + json.dumps({**spec, "timed_out": True, "load": load(),
                                  "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)
    try:
        import ray

        ray.shutdown()  # stops the Ray processes this run started
    finally:
        os._exit(3)


def run_subprocess(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                          text=True, cwd=REPO, timeout=spec["timeout"] + 120)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {**spec, "failed": (proc.stderr or proc.stdout)[-2000:], "load": load(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# ---------------------------------------------------------------- tables

def _name(engine: str) -> str:
    if "_tree_f" in engine:
        return NAMES[engine.rsplit("_f", 1)[0]] + f", at most {engine.rsplit('_f', 1)[1]} pieces per split"
    return NAMES[engine]


def _fmt_row(r: dict) -> list:
    name = _name(r["engine"])
    if r.get("timed_out") or r.get("failed"):
        why = f"timed out after {r['timeout']} s" if r.get("timed_out") else "failed: " + r["failed"].strip().splitlines()[-1][:120]
        return [name, why] + [""] * 12
    c = r["counts"]
    tasks = c.get("size_tasks", 0) + c.get("split_tasks", 0) + c.get("reduce_tasks", 0) + c.get("map_tasks", 0)
    objects = c.get("objects")
    biggest = c.get("max_split_bytes", c.get("max_task_bytes"))
    return [name, f"{r['parts']:,}", f"{r.get('passes', 1)}", f"{r['wall_s']:.1f}", f"{r['cpu_s']:.0f}",
            f"{r['worker_private_mb']:.0f}", f"{r['worker_rss_mb']:.0f}",
            f"+{r['driver_mb'] - r['driver_before_mb']:.0f}" if "driver_before_mb" in r else "",
            f"{biggest / 2**20:.2f}" if biggest else "n/a", f"{tasks:,}" if tasks else "n/a",
            f"{objects:,}" if objects else "n/a", f"{r['plasma_created']:,}", f"{r['spilled_mb']:.0f}",
            "yes" if r["equal"] else "**NO**"]


HEADER = ["engine", "partitions", "passes", "wall s", "CPU s", "worker peak private MB", "worker peak RSS MB", "driver MB added",
          "largest task input MB", "tasks", "objects (task results)", "plasma objects", "spilled MB", "output equal"]


def tables(rows: list) -> str:
    out = []
    keyed = {}
    for r in rows:
        keyed.setdefault((r["kind"], r["n"], r["scale"]), []).append(r)
    for (kind, n, s), rs in sorted(keyed.items()):
        what = "bucket edges (group by key)" if kind == "edges" else "label join-back (docs left-join labels by id)"
        scale = "real budgets" if s == 1 else f"budgets / {s}: the partitions of {n * s:,} documents"
        first = rs[0]
        loads = ", ".join(sorted({r["load"] for r in rs if "load" in r}))
        extra = f"{first.get('keys', 0):,} key rows" if kind == "edges" else f"{first.get('docs', 0):,} documents"
        out += [f"**{what}, {n:,} documents ({extra}), {scale}** ({rs[0]['when']}; load avg before runs {loads})", "",
                table([_fmt_row(r) for r in rs], HEADER), ""]
    return "\n".join(out)


def summary(rows: list) -> str:
    """One line per run of the edges shuffle, by engine and by the corpus whose partitions it has
    (documents x scale): the largest task input and the objects it would have at that size."""
    out = []
    for r in sorted((r for r in rows if r["kind"] == "edges" and "wall_s" in r and r["engine"] in
                     ("ours_tree", "ours_1pass", "rd_repart", "rd_repart_disk")),
                    key=lambda r: (EDGE_ENGINES.index(r["engine"]), r["n"] * r["scale"], r["n"])):
        c, s, equiv = r["counts"], r["scale"], r["n"] * r["scale"]
        biggest = c.get("max_split_bytes", c.get("max_task_bytes", 0))
        objects = c.get("objects", 0)
        out.append([_name(r["engine"]), f"{equiv:,}", f"{r['n']:,} / {s}", f"{r['parts']:,}", r.get("passes", 1),
                    f"{biggest * s / 2**20:,.0f}", f"{r['worker_private_mb']:.0f}", f"{objects:,}",
                    f"{objects / (equiv / 1e6):,.0f}", f"{c.get('fetches', 0) / (equiv / 1e6):,.0f}" if "fetches" in c else "",
                    f"{r['cpu_s']:.0f}", f"{r['wall_s']:.0f}"])
    return table(out, ["engine", "partitions of (documents)", "run: documents / budget divisor", "partitions", "passes",
                       "largest task input at that size MB", "worker peak private MB (this run)",
                       "objects per shuffle", "objects per 1M documents", "map-output reads per 1M documents",
                       "CPU s", "wall s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000])
    ap.add_argument("--scales", type=int, nargs="+", default=[1])
    ap.add_argument("--engines", nargs="+", default=None, help=f"of {EDGE_ENGINES + JOIN_ENGINES}")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bespoke_shuffle_scale"))
    ap.add_argument("--out", type=Path, default=None, help="jsonl of the runs (default: cache/runs.jsonl)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds one run may take")
    ap.add_argument("--write", action="store_true", help="rewrite the RESULTS.md section from --out")
    ap.add_argument("--tables-only", action="store_true", help="only print (or --write) tables from --out")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(one(json.loads(a.one))), flush=True)
        os._exit(0)
    out = a.out or a.cache / "runs.jsonl"
    if not a.tables_only:
        engines = a.engines or ["ours_tree", "ours_1pass", "rd_repart", "rd_map_groups", "ours_join_tree", "rd_join"]
        engines = sorted(engines, key=lambda e: (e.startswith(("ours_join", "rd_join")), e not in ("ours_tree", "ours_join_tree")))
        for n in a.docs:
            folder = build_corpus(a.cache, n)
            runs = [(s, e) for s in a.scales for e in engines]
            if not (folder / "edges.parquet").exists() and runs[0] != (1, "ours_tree"):
                runs.insert(0, (1, "ours_tree"))  # the reference output (and the join's labels)
            for s, e in runs:
                spec = {"engine": e, "kind": "join" if e.startswith(("ours_join", "rd_join")) else "edges", "n": n, "scale": s,
                        "folder": str(folder), "timeout": a.timeout, "cmd": " ".join(sys.argv[1:])}
                r = run_subprocess(spec)
                print(json.dumps({k: v for k, v in r.items() if k not in ("folder", "cmd")}), flush=True)
                with open(out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    rows = [json.loads(line) for line in open(out)] if out.exists() else []
    text = "**Scale (edges shuffle)**\n\n" + summary(rows) + "\n\n" + tables(rows)
    print(text)
    if a.write:
        from _results import replace_section

        commands = sorted({r["cmd"] for r in rows if r.get("cmd")})
        how = ("Commands (each run its own process and embedded Ray on 2 CPUs; the tables are rebuilt from the "
               "runs' jsonl with `--tables-only --write`): " + "; ".join(f"`python benchmarks/shuffle_scale.py {c}`"
                                                                     for c in commands) + ".\n\n")
        replace_section("shuffle_scale", "## Dedup shuffle at scale (`benchmarks/shuffle_scale.py`)\n\n" + how + text)


if __name__ == "__main__":
    main()
