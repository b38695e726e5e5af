"""Curation benchmarks: (a) FineWeb-style extraction + filters, ours on Ray Data with 1 CPU side by side
with Hugging Face datatrove 0.10.1 with 1 task, on the same real pages; (b) fuzzy dedup (MinHash +
LSH + distributed connected components) at 10k and 100k short documents (--dedup-docs sets the
sizes): wall and CPU time, driver peak memory and worker peak memory.

    pip install --no-deps datatrove==0.10.1 loguru humanize fasteners && pip install faust-cchardet python-magic
        # benchmark only, not a
        # project dependency (datatrove[processing] would pin trafilatura < 1.12, the project uses 2.3)
    python benchmarks/curation_throughput.py                 # both parts, writes RESULTS.md section
    python benchmarks/curation_throughput.py --pages 400 --dedup-docs 10000 --no-write   # quick look
    python benchmarks/curation_throughput.py --skip-throughput --dedup-docs 10000 100000 1000000  # (b), ~7 min

(a) Input: every HTML response in ../shared/data/warc plus the 130 pages of
../shared/data/html/readability, repeated (new record ids and URLs) to --pages pages in one
.warc.gz. datatrove: WarcReader -> Trafilatura(favour_precision) -> GopherRepetitionFilter ->
GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQualityFilter ->
JsonlWriter, run by LocalPipelineExecutor(tasks=1, workers=1) (datatrove's FineWeb recipe without
URL and language filters). Ours: run_curation with CurateConfig.fineweb() (the same chain, order,
formulas, spaCy tokenizer and thresholds; trafilatura deduplicate; no ftfy) and steps extract,
normalize, quality, on a Ray instance with num_cpus=1. Both get one core; they run one after the other. Agreement = share
of pages where both keep or both drop.
(b) Input: synthetic documents of 3 to 6 real sentences (MMLU, GSM8K, ARC, Shakespeare) drawn at
random, 10% of them copied with one or two words changed (planted near duplicates) and 2% copied
exactly; jsonl shards of DOCS_PER_SHARD documents (a real corpus is many fixed-size files, so the
number of files, not their size, grows with the corpus). Ours: run_curation with steps exact_dedup,
minhash_dedup on all cores, one output parquet shard per OUT_DOCS_PER_SHARD documents.
The machine is shared: the load average is printed with every figure; compare ratios.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
DOCS_PER_SHARD = 10_000  # (b) input documents per jsonl file
OUT_DOCS_PER_SHARD = 25_000  # (b) output documents per parquet shard


# ---------------------------------------------------------------- (a) input pages

def real_pages() -> list[tuple[str, bytes]]:
    """(url, html) of every HTML response in the real WARCs and every readability page."""
    from pipelines.curation.readers import iter_file_rows

    pages = [(r["url"], r["html"]) for f in sorted(glob.glob(str(DATA / "warc" / "*.warc.gz")))
             for r in iter_file_rows(f) if r["status"] == "kept" and r["html"]]
    pages += [(f"https://readability.example/{Path(p).name[:-8]}", gzip.open(p).read())
              for p in sorted(glob.glob(str(DATA / "html" / "readability" / "*.html.gz")))]
    return pages


def write_bench_warc(path: Path, pages: list[tuple[str, bytes]], n: int) -> None:
    """n response records cycling over `pages`, each with its own URL (and record id), typed
    text/html in WARC-Identified-Payload-Type as Common Crawl does: without it datatrove's reader
    sniffs the type with libmagic, which calls 2 of the pages application/javascript and skips them."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i in range(n):
            url, html = pages[i % len(pages)]
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                f"{url}#copy{i}", "response", payload=io.BytesIO(html), http_headers=http,
                warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"}))


# ---------------------------------------------------------------- (a) the two pipelines

def run_datatrove(warc_dir: Path, out_dir: Path) -> tuple[float, set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)
    from datatrove.pipeline.readers import WarcReader

    pipeline = [WarcReader(str(warc_dir), glob_pattern="*.warc.gz"), Trafilatura(favour_precision=True, timeout=30),
                GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
                FineWebQualityFilter(), _UrlSink(out_dir / "kept.txt")]
    with TreeCpu() as cpu:
        started = time.time()
        LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out_dir / "logs")).run()
        seconds = time.time() - started
    return seconds, cpu.seconds, set((out_dir / "kept.txt").read_text(encoding="utf-8").split("\n")) - {""}


class _UrlSink:
    """Last datatrove step: the URL of every kept document, one a line (instead of a writer)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        with open(self.path, "w", encoding="utf-8") as f:
            for doc in data:
                f.write(doc.metadata["url"] + "\n")
                yield doc


def fineweb_config():
    from pipelines.curation import CurateConfig

    # FineWeb's extraction and filter chain as datatrove runs it (CurateConfig.fineweb: rule order,
    # formulas, spaCy words, trafilatura deduplicate, no ftfy); normalize then changes nothing.
    return CurateConfig.fineweb(steps=["extract", "normalize", "quality"], val_fraction=0.0,
                                write_rejected=True, num_shards=1)


def run_ours(warc: Path, out_dir: Path) -> tuple[float, float, set[str], dict]:
    import pyarrow.parquet as pq

    from pipelines.curation import run_curation

    with TreeCpu() as cpu:
        started = time.time()
        report = run_curation(fineweb_config(), [str(warc)], str(out_dir), progress=lambda s: None)
        seconds = time.time() - started
    kept = {r["url"] for p in (out_dir / "train").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    report["cpu_by_kind"] = cpu.by_kind
    return seconds, cpu.seconds, kept, report


# ---------------------------------------------------------------- (b) dedup corpus

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

    cfg = CurateConfig(steps=["exact_dedup", "minhash_dedup"], val_fraction=0.0, write_rejected=False,
                       num_shards=-(-n_docs // OUT_DOCS_PER_SHARD), **banding)
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
    dedup_start = next((t for t, s in lines if "dedup (exact" in s), 0.0)
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


class TreeCpu:
    """CPU seconds (user + system) used by this process and every descendant while the block runs:
    the embedded Ray's GCS, raylet and workers, and datatrove's extraction sandbox. Processes are
    sampled every 0.2 s and each keeps its last reading, so one that is killed before it is reaped
    (datatrove terminates its sandbox) still counts. Unlike wall time, CPU time barely moves when
    other jobs load the machine, so documents per CPU-second is the per-core figure."""

    def __init__(self):
        self.seconds, self._last, self._base, self._workers = 0.0, {}, {}, set()
        self.by_kind = {}  # CPU s of Ray workers (ray::*: the tasks), this process, everything else
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict:
        import psutil

        out = {}
        for p in [psutil.Process()] + psutil.Process().children(recursive=True):
            try:
                t = p.cpu_times()
                key = (p.pid, p.create_time())
                out[key] = t.user + t.system
                if p.name().startswith("ray::"):
                    self._workers.add(key)
            except psutil.Error:
                pass
        return out

    def _run(self):
        while not self._stop.wait(0.2):
            self._last.update(self._sample())

    def __enter__(self):
        self._base = self._sample()
        self._last = dict(self._base)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        used = {k: v - self._base.get(k, 0.0) for k, v in self._last.items()}
        self.seconds = sum(used.values())
        me = next((k for k in used if k[0] == os.getpid()), None)
        workers = sum(v for k, v in used.items() if k in self._workers)
        self.by_kind = {"workers": workers, "driver": used.get(me, 0.0),
                        "other": self.seconds - workers - used.get(me, 0.0)}


def start_ray(num_cpus: int | None = None, tries: int = 3) -> None:
    """A fresh embedded Ray; on a heavily loaded machine its start can time out, so retry."""
    import ray

    from cluster import connect

    for attempt in range(tries):
        if ray.is_initialized():
            ray.shutdown()
        try:
            connect(num_cpus=num_cpus)
            return
        except Exception as exc:  # noqa: BLE001 - "node timed out during startup" under load
            print(f"ray start failed ({exc}); retry {attempt + 1}/{tries}", flush=True)
            time.sleep(10)
    connect(num_cpus=num_cpus)


# ---------------------------------------------------------------- report

def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=1000, help="pages in the throughput input (default 1000)")
    ap.add_argument("--dedup-docs", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="curation-bench-"))
    sections = {}
    try:
        if not args.skip_throughput:
            sections["a"] = throughput(work, args.pages)
        if args.dedup_docs:
            sections["b"] = dedup(work, args.dedup_docs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n\n".join(sections.values()))
    if not args.no_write:
        write_section(sections)


def throughput(work: Path, n_pages: int) -> str:
    import ray

    pages = real_pages()
    (work / "warc").mkdir()
    warc = work / "warc" / "bench.warc.gz"
    write_bench_warc(warc, pages, n_pages)
    mb = sum(len(pages[i % len(pages)][1]) for i in range(n_pages)) / 1e6
    load_dt = load()
    dt_s, dt_cpu, dt_kept = run_datatrove(work / "warc", work / "dt")
    print(f"datatrove: {n_pages} pages in {dt_s:.1f} s, {dt_cpu:.1f} CPU-s, kept {len(dt_kept)} (load {load_dt})",
          flush=True)
    t0 = time.time()
    start_ray(num_cpus=1)
    init_s = time.time() - t0
    load_ours = load()
    ours_s, ours_cpu, ours_kept, report = run_ours(warc, work / "ours")
    ray.shutdown()
    kinds = report["cpu_by_kind"]
    print(f"ours: {n_pages} pages in {ours_s:.1f} s, {ours_cpu:.1f} CPU-s {kinds}, kept {len(ours_kept)} "
          f"(load {load_ours})", flush=True)
    urls = [f"{pages[i % len(pages)][0]}#copy{i}" for i in range(n_pages)]
    differ = [u for u in urls if (u in dt_kept) != (u in ours_kept)]
    agree = 1 - len(differ) / n_pages
    rows = [["datatrove 0.10.1, LocalPipelineExecutor 1 task", f"{dt_s:.0f}", f"{dt_cpu:.0f}",
             f"{n_pages / dt_cpu:.2f}", f"{mb / dt_cpu:.3f}", f"{n_pages / dt_s:.2f}", len(dt_kept), load_dt],
            ["bespokelm run_curation, Ray Data num_cpus=1", f"{ours_s:.0f}", f"{ours_cpu:.0f}",
             f"{n_pages / ours_cpu:.2f}", f"{mb / ours_cpu:.3f}", f"{n_pages / ours_s:.2f}", len(ours_kept), load_ours],
            ["  the same, Ray worker processes only (the tasks)", "", f"{kinds['workers']:.0f}",
             f"{n_pages / kinds['workers']:.2f}", f"{mb / kinds['workers']:.3f}", "", "", ""]]
    return "\n".join([
        f"### (a) FineWeb-style extraction + filters, one core each ({time.strftime('%Y-%m-%d')})", "",
        f"{n_pages} pages ({mb:.1f} MB of HTML): the {len(pages)} HTML pages of ../shared/data/warc and "
        "../shared/data/html/readability, repeated with new URLs. Pipeline: WARC read -> trafilatura "
        "(favour precision, deduplicate) -> Gopher repetition, Gopher quality, C4 (no terminal-punctuation rule), "
        "FineWeb quality; no language ID, no dedup.", "",
        table(rows, ["pipeline", "wall s", "CPU s", "pages per CPU-s", "MB per CPU-s", "pages/s wall",
                     "kept", "load avg 1/5/15 min"]), "",
        f"- Per core, pages per CPU-second (the figure to scale by): datatrove **{n_pages / dt_cpu:.2f}** "
        f"(its process and its extraction sandbox); ours **{n_pages / kinds['workers']:.2f}** counting the Ray "
        f"workers that run the tasks (ours / datatrove = **{dt_cpu / kinds['workers']:.2f}x**), "
        f"{n_pages / ours_cpu:.2f} counting every process of the embedded Ray ({dt_cpu / ours_cpu:.2f}x): driver "
        f"{kinds['driver']:.0f} CPU-s, GCS/raylet/dashboard and agents {kinds['other']:.0f} CPU-s, a per-node cost "
        f"that grows with wall time, not with documents, and is shared by all cores of a real node.",
        f"- Wall time: ours / datatrove {dt_s / ours_s:.2f}x, at the load averages in the table on 2 cores shared "
        f"with other jobs, so wall times include waiting (ray.init, {init_s:.0f} s, is excluded).",
        f"- Same keep/drop decision on {agree:.1%} of pages"
        + (f" ({len(differ)} differ: " + ", ".join(f"{u} ({'datatrove' if u in dt_kept else 'ours'} keeps)"
                                                   for u in differ[:5]) + ")." if differ else ".")
        + " Ours runs CurateConfig.fineweb(): FineWeb's order (Gopher repetition, Gopher quality, C4, FineWeb) "
        "on the unrepaired trafilatura text, with datatrove's formulas and spaCy words. Before it (92.0%, "
        "2026-11-26) 16 pages differed: 10 by Gopher's alpha-word rule (datatrove counts spaCy tokens, "
        "punctuation included; we counted whitespace words), 3 records that datatrove's reader skipped (libmagic "
        "calls 2 of the HTML pages JavaScript when a WARC record has no WARC-Identified-Payload-Type; the "
        "benchmark WARC now has it, as Common Crawl's do), 1 by C4 running before Gopher repetition (it removed "
        "the short duplicate lines that drop royal-road), 1 by C4's document rules seeing lines its line rules "
        "remove (a '{' in a 2-word line), 1 by sentence counting. ftfy/NFC and whitespace tidying alone change "
        "2 decisions (Gopher's duplicate-line rule), so fineweb() turns them off.",
        f"- Ours: {report['dropped_docs']} dropped, {report['errored_docs']} errored; drop reasons "
        + ", ".join(f"{k} {v}" for k, v in sorted(report["dropped"].items(), key=lambda kv: -kv[1])[:6]) + "."])


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
        f"{DOCS_PER_SHARD:,} documents, parquet output shards of {OUT_DOCS_PER_SHARD:,}. Exact + MinHash "
        "(word 5-grams, 112 permutations), LSH bucket edges, with minhash_threshold two hash joins that check each "
        "candidate pair's signatures, and large-star/small-star connected components on Ray tasks, hash-partitioned "
        "joins (no step collects signatures, edges or labels on the driver). Each size is one corpus, run with "
        "each banding.", "",
        table(rows, ["docs", "banding", "CPUs", "total s", "phases s", "CPU s", "wall ms/doc", "CPU ms/doc", "docs per CPU-s",
                     "driver peak MB (+ in run)", "worker peak RSS MB", "worker peak private MB", "planted copies", "recall",
                     "recall J>=0.75", "precision", "load avg"]), "",
        "- `total s` (wall) includes reading jsonl and writing parquet; `phases s` (wall, from the progress lines) "
        "splits it into read / bucket keys with MinHash + bucket edges / connected components + labels / "
        "hash join onto the documents + write. `CPU s` is the whole run's CPU time over the "
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


def table(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


NOTES = "<!-- hand-written notes: kept when the script rewrites this subsection -->"


def write_section(sections: dict[str, str]) -> None:
    """Rewrite subsections (a) and (b) that ran; one that did not run keeps its text in RESULTS.md,
    notes added under it included. One that ran keeps what follows its NOTES line (check that the
    notes still match the new figures)."""
    from _results import RESULTS, replace_section

    old = RESULTS.read_text() if RESULTS.exists() else ""
    for key in ("a", "b"):
        found = re.search(rf"^### \({key}\) .*?(?=^### \(|^<!-- curation:end -->)", old, re.S | re.M)
        if key not in sections and found:
            sections[key] = found.group(0).rstrip()
        elif found and NOTES in found.group(0):
            sections[key] += "\n" + NOTES + found.group(0).split(NOTES, 1)[1].rstrip()
    body = "\n\n".join(sections[k] for k in ("a", "b") if k in sections)
    replace_section("curation", "## Curation throughput and dedup scale\n\n`python benchmarks/curation_throughput.py` "
                                f"on this 2-core machine shared with other jobs.\n\n{body}")


if __name__ == "__main__":
    main()
