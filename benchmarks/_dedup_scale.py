"""Curation benchmark (b): exact + MinHash dedup of a generated corpus with planted near duplicates,
at the sizes given, with each banding in BANDINGS: wall and CPU time, driver and worker peak
memory, recall and precision. Run through curation_throughput.py (it writes RESULTS.md):

    python benchmarks/curation_throughput.py --skip-throughput --dedup-docs 10000 100000 1000000
"""
from __future__ import annotations

import glob
import json
import random
import re
import shutil
import threading
import time
from pathlib import Path

from _curation_bench import DATA, TreeCpu, load, start_ray, table

DOCS_PER_SHARD = 10_000  # input documents per jsonl file


def real_sentences() -> list[str]:
    out = []
    for path in glob.glob(str(DATA / "benchmarks" / "mmlu" / "test" / "*.csv")):
        import csv

        with open(path, encoding="utf-8") as f:
            out += [r[0] for r in csv.reader(f) if r]
    for line in open(DATA / "benchmarks" / "gsm8k" / "test.jsonl", encoding="utf-8"):
        out += re.split(r"(?<=[.?!])\s+", json.loads(line)["question"])
    for path in glob.glob(str(DATA / "benchmarks" / "arc" / "*.jsonl")):
        out += [json.loads(line)["question"]["stem"] for line in open(path, encoding="utf-8")]
    text = (DATA / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    out += [s.replace("\n", " ") for s in re.split(r"(?<=[.?!])\s+", text)]
    # 6 to 40 words: MMLU's reading passages (hundreds of words, repeated across several questions
    # with a different question after them) would make unplanted documents near duplicates.
    return sorted({s.strip() for s in out if 6 <= len(s.split()) <= 40})


def write_dedup_corpus(folder: Path, n_docs: int, seed: int = 0) -> dict:
    """n_docs jsonl documents in files of DOCS_PER_SHARD; returns {"groups": {original id: [copy ids]}, "ids": every id,
    "jaccard": {copy id: true 5-gram Jaccard with its original}}."""
    rng = random.Random(seed)
    sentences = real_sentences()
    shards = -(-n_docs // DOCS_PER_SHARD)
    files = [open(folder / f"docs-{i:04d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    planted, ids, jaccard, n = {}, [], {}, 0
    while n < n_docs:
        words = " ".join(rng.sample(sentences, rng.randint(3, 6))).split()
        doc_id = f"d{n:08d}"
        docs = [(doc_id, words)]
        r = rng.random()
        if r < 0.10:  # near duplicate: one or two words replaced
            copy = list(words)
            for _ in range(rng.randint(1, 2)):
                copy[rng.randrange(len(copy))] = rng.choice(["alpha", "beta", "gamma", "delta"])
            docs.append((f"{doc_id}n", copy))
        elif r < 0.12:
            docs.append((f"{doc_id}x", words))
        if len(docs) > 1:
            planted[doc_id] = [d for d, _ in docs[1:]]
            jaccard[docs[1][0]] = _jaccard(docs[0][1], docs[1][1])
        for d, w in docs:
            ids.append(d)
            files[n % shards].write(json.dumps({"id": d, "text": " ".join(w)}) + "\n")
            n += 1
    for f in files:
        f.close()
    return {"groups": planted, "ids": ids, "jaccard": jaccard}


def _jaccard(a: list[str], b: list[str], n: int = 5) -> float:
    """Jaccard similarity of the word 5-gram sets (lower-cased), what MinHash estimates."""
    ga, gb = ({" ".join(w[i:i + n]).lower() for i in range(len(w) - n + 1)} for w in (a, b))
    return len(ga & gb) / max(1, len(ga | gb))


class PeakWorkerMemory:
    """Samples twice a second the memory of every Ray worker process (ray::*) started by this
    process (other jobs' Ray workers on the machine are not counted) and of this driver; keeps
    the largest worker RSS, the largest worker private RSS and the driver's peak RSS during the
    block. A worker's RSS also counts the object-store pages it has read (shared memory, mapped for
    zero-copy reads), which accumulate over a long-lived worker's tasks; private is RSS minus
    shared pages (/proc statm: its anonymous memory, heap and Arrow buffers), as cheap to read as
    RSS (psutil's USS reads smaps, ~30 ms per worker and sample: CPU the benchmark would count)."""

    def __init__(self):
        self.peak_mb, self.peak_private_mb, self.driver_peak_mb = 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.5):
            self.driver_peak_mb = max(self.driver_peak_mb, me.memory_info().rss / 2**20)
            for p in me.children(recursive=True):
                try:
                    if p.name().startswith("ray::"):
                        mem = p.memory_info()
                        self.peak_mb = max(self.peak_mb, mem.rss / 2**20)
                        self.peak_private_mb = max(self.peak_private_mb, (mem.rss - mem.shared) / 2**20)
                except psutil.Error:  # processes come and go
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# The default banding (datatrove's) and the high-recall one: shorter bands, candidates checked against
# their signatures' Jaccard estimate (CurateConfig.minhash_threshold).
BANDINGS = {"14x8 (default)": {}, "28x4, minhash_threshold 0.55": {"bands": 28, "rows": 4, "minhash_threshold": 0.55}}


def run_dedup(folder: Path, out: Path, planted: dict, n_docs: int, banding: dict) -> dict:
    import pyarrow.parquet as pq

    from pipelines.curation import CurateConfig, run_curation

    cfg = CurateConfig(steps=["exact_dedup", "minhash_dedup"], val_fraction=0.0, write_rejected=False, **banding)
    lines = []
    import psutil

    rss_before = psutil.Process().memory_info().rss / 2**20
    with PeakWorkerMemory() as workers, TreeCpu() as tree:
        started = time.time()
        report = run_curation(cfg, [str(folder / "*.jsonl")], str(out),
                              progress=lambda s: lines.append((time.time() - started, s)))
        seconds = time.time() - started
    cpu = tree.seconds
    kept = {r["id"] for p in (out / "train").glob("*.parquet") for r in pq.read_table(p, columns=["id"]).to_pylist()}
    copies = {c for cs in planted["groups"].values() for c in cs}
    removed = n_docs - len(kept)
    found = {c for orig, cs in planted["groups"].items() for c in cs if not ({orig, c} <= kept)}
    wrongly = sum(1 for d in planted["ids"] if d not in kept and d not in planted["groups"] and d not in copies)
    similar = {c for c, j in planted["jaccard"].items() if j >= 0.75}
    dedup_start = next((t for t, s in lines if "dedup of" in s), 0.0)
    dedup_end = next((t for t, s in lines if "dedup marked" in s or "dedup found no" in s), seconds)
    edges_end = next((t for t, s in lines if "candidate edges" in s), dedup_end)
    phases = [dedup_start, edges_end - dedup_start, dedup_end - edges_end, seconds - dedup_end]
    return {"docs": n_docs, "seconds": seconds, "cpu_seconds": cpu, "dedup_seconds": dedup_end - dedup_start,
            "phases": phases,
            "driver_peak_mb": workers.driver_peak_mb, "driver_rss_before_mb": rss_before,
            "worker_peak_mb": workers.peak_mb, "worker_peak_private_mb": workers.peak_private_mb, "planted_pairs": len(copies), "removed": removed,
            "recall": len(found) / max(1, len(copies)), "precision": 1 - wrongly / max(1, removed),
            "recall_similar": len(found & similar) / max(1, len(similar)), "n_similar": len(similar),
            "kept": report["kept_docs"]}


def dedup(work: Path, sizes: list[int]) -> str:
    import ray

    rows, below = [], {}
    for n in sizes:
        folder = work / f"dedup-{n}"
        folder.mkdir()
        planted = write_dedup_corpus(folder, n)
        near = [j for c, j in planted["jaccard"].items() if c.endswith("n")]
        below = {t: sum(j < t for j in near) / len(near) for t in (0.6, 0.7, 0.75)}
        for name, banding in BANDINGS.items():
            start_ray()
            cpus = int(ray.cluster_resources().get("CPU", 1))
            load_before = load()
            r = run_dedup(folder, work / f"dedup-out-{n}-{len(rows)}", planted, n, banding)
            ray.shutdown()
            shutil.rmtree(work / f"dedup-out-{n}-{len(rows)}", ignore_errors=True)
            print(f"dedup {n} {name}: {r} (load {load_before})", flush=True)
            rows.append(_dedup_row(n, name, cpus, r, load_before))
        shutil.rmtree(folder, ignore_errors=True)
    return _dedup_section(rows, below)


def _dedup_row(n: int, name: str, cpus: int, r: dict, load_before: str) -> list:
    return [f"{n:,}", name, cpus, f"{r['seconds']:.0f}", " / ".join(f"{x:.0f}" for x in r["phases"]),
                     f"{r['cpu_seconds']:.0f}", f"{1000 * r['seconds'] / n:.2f}", f"{1000 * r['cpu_seconds'] / n:.2f}",
                     f"{n / r['cpu_seconds']:.0f}", f"{r['driver_peak_mb']:.0f} (+{r['driver_peak_mb'] - r['driver_rss_before_mb']:.0f})",
                     f"{r['worker_peak_mb']:.0f}", f"{r['worker_peak_private_mb']:.0f}", f"{r['planted_pairs']:,}", f"{r['recall']:.3f}",
                     f"{r['recall_similar']:.3f}", f"{r['precision']:.4f}", load_before]


def _dedup_section(rows: list, below: dict) -> str:
    return "\n".join([
        f"### (b) Fuzzy dedup at scale ({time.strftime('%Y-%m-%d')})", "",
        "Synthetic documents of 3-6 real sentences (MMLU, GSM8K, ARC, Shakespeare) drawn at random from a pool of "
        f"{len(real_sentences()):,}, about 72 words each; 10% planted near copies (1-2 words replaced), 2% exact copies; jsonl files of "
        f"{DOCS_PER_SHARD:,} documents, one input part each (pipelines/curation/parts.py). Exact + MinHash "
        "(word 5-grams, 112 permutations), LSH bucket edges, with minhash_threshold two hash joins that check each "
        "candidate pair's signatures, and large-star/small-star connected components on Ray tasks, hash-partitioned "
        "joins (no step collects signatures, edges or labels on the driver). Each size is one corpus, run with "
        "each banding.", "",
        table(rows, ["docs", "banding", "CPUs", "total s", "phases s", "CPU s", "wall ms/doc", "CPU ms/doc", "docs per CPU-s",
                     "driver peak MB (+ in run)", "worker peak RSS MB", "worker peak private MB", "planted copies", "recall",
                     "recall J>=0.75", "precision", "load avg"]), "",
        "- `total s` (wall) includes reading jsonl and writing parquet; `phases s` (wall, from the progress lines) "
        "splits it into read + MinHash signatures + part files (the part tasks) / bucket keys + bucket edges / "
        "connected components + labels / labels routed to their parts + each part's train/val files. `CPU s` is the whole run's CPU time over the "
        "process tree (Ray start-up excluded), so `CPU ms/doc` and `docs per CPU-s` are the per-core cost of read + exact + fuzzy "
        "dedup + write; wall times include waiting for the other jobs on the 2 cores (load avg). Driver peak is the benchmark "
        "process's RSS sampled every 0.5 s during the run; it holds the corpus generator's sentences and its list of "
        "planted copies (which grows with the documents) before the run starts, so `+ in run` is what the pipeline adds. Worker peaks are the largest of any ray:: process started by the benchmark, sampled every 0.5 s: "
        "RSS also counts the object-store pages a worker has read (shared memory, mapped for zero-copy reads, which a "
        "long-lived worker accumulates over its tasks); private is RSS minus those shared pages (its heap and Arrow buffers).",
        "- Precision: 1 - (unplanted documents removed) / (documents removed). Recall: planted copies with one member "
        "of the pair removed; `recall J>=0.75` counts only copies whose true word 5-gram Jaccard with the original is "
        ">= 0.75. Two replaced words in a 72-word document give J about 0.74, and less in shorter ones: of the "
        f"planted near copies in the largest corpus {below[0.6]:.1%} have J < 0.6, {below[0.7]:.1%} J < 0.7 and "
        f"{below[0.75]:.1%} J < 0.75. 14x8 bands put the 50% detection point near (1/14)^(1/8) = 0.72, so they "
        "miss many of those by design; 28x4 bands put it near 0.43 and the signature check at 0.55 removes the "
        "unrelated pairs that share a band (documents drawn from the same sentence pool can share a sentence or "
        "two)."])
