"""`run_curation`: raw files in, curated train/val parquet and a report out; streaming, per part,
resumable, on Ray Data and Ray tasks, with every path local or in object storage.

    plan parts ─▶ per part (one Ray Data task each, streaming):  read -> extract -> blocklist ->
    normalize -> langid -> quality -> pii -> decontaminate -> signatures  ─▶ parts/<part>.*
    ─▶ dedup from storage: bucket edges -> (verify) -> components -> labels, each phase saved
    ─▶ per part again: duplicates marked, val split, mixing ─▶ train/, val/, rejected/, final/
    ─▶ report.json / report.md: the sum of the parts' counts

Ray must be initialised by the caller (`cluster.connect()`; tests use the `ray_session` fixture):

    from pipelines.curation import CurateConfig, run_curation
    report = run_curation(CurateConfig(), ["data/*.warc.gz"], "runs/demo/curated")
    report = run_curation(cfg, ["s3://commoncrawl/crawl-data/CC-MAIN-2024-22/warc.paths.gz"],
                          "s3://my-bucket/curated")           # a manifest in, a bucket out

Nothing of the corpus is held until the end: each part's rows go to storage from the task that
made them, with a completion marker (parts.py), so a run that dies (driver killed, head
restarted) and is started again with the same config and output redoes only the unfinished
parts and dedup phases (resume.py; a changed config is refused, `restart=True` starts over).
Writes output/train/*.parquet, output/val/*.parquet (columns id, text, url, source, meta),
output/rejected/*.parquet (every other row with its status, if cfg.write_rejected), and
output/report.json / report.md. Returns the report dict. Train rows are repeated or sampled by
`cfg.source_weights` (mixing.py).
"""
from __future__ import annotations

import dataclasses
import json
import time

from pipelines.curation import store
from pipelines.curation.config import CurateConfig
from pipelines.curation.dedup import find_duplicates
from pipelines.curation.finalize import final_marker, finalize_part, route_labels
from pipelines.curation.parts import Part, marker_path, part_dir, plan_parts, process_part, read_markers
from pipelines.curation.phases import PhaseStore, load_blocks
from pipelines.curation.readers import expand_inputs, source_of
from pipelines.curation.report import build_report, merge_counts, write_report
from pipelines.curation.resume import start_or_resume
from pipelines.curation.shuffle import num_rows, parts_for
from pipelines.curation.steps import step_names
from pipelines.progress import Meter


def run_curation(cfg: CurateConfig, inputs: list[str], output_dir: str, progress=print,
                 restart: bool = False) -> dict:
    import ray

    started = time.time()
    output = str(output_dir)
    store.configure_io(**io_settings(cfg))
    files = expand_inputs(inputs, cfg)
    _check_weights(cfg, files)
    parts = plan_parts(files, cfg.min_parts)
    resumed = start_or_resume(output, cfg, files, parts, restart, progress)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    progress(f"curate: {len(files)} file(s) in {len(parts)} part(s) -> {output}"
             + (" (resuming an earlier run)" if resumed else ""))
    markers, skipped = _per_document(cfg, parts, output, progress)
    buckets = _deduplicate(cfg, parts, markers, output, cpus, progress)
    finals, final_skipped = _finalize(cfg, parts, markers, output, buckets, progress)
    _remove_stale_attempts(output, markers)
    order = ["read"] + step_names(cfg) + [
        s for s in ("exact_dedup", "minhash_dedup") if cfg.enabled(s)] + ["mix"]
    report = build_report(merge_counts(m["counts"] for m in finals), order, {
        "inputs": files, "output_dir": output, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
        "source_weights": cfg.source_weights, "seconds": round(time.time() - started, 1),
        "parts": _part_rows(markers, finals), "parts_total": len(parts), "parts_skipped": skipped,
        "final_parts_skipped": final_skipped})
    write_report(report, output)
    progress(f"curate: {report['input_docs']} docs in, {report['kept_docs']} kept "
             f"({report['train_docs']} train / {report['val_docs']} val), {report['dropped_docs']} "
             f"dropped, {report['errored_docs']} errored in {report['seconds']:.0f} s; "
             f"{skipped} of {len(parts)} parts were already done -> {output}")
    return report


def _per_document(cfg: CurateConfig, parts: list[Part], output: str, progress) -> tuple[list[dict], int]:
    """Every part through the per-document steps, one Ray Data task per part, streaming: the
    driver only receives each part's marker (counts and file names), as parts finish."""
    done = read_markers({p.index: marker_path(output, p) for p in parts}, part_dir(output))
    todo = [p for p in parts if p.index not in done]
    steps = " -> ".join(["read"] + step_names(cfg))
    progress(f"curate: {steps} (per document): {len(todo)} part(s) to do, {len(done)} already done")
    records = 0

    def note(marker: dict) -> str:
        nonlocal records
        records += marker["rows"]
        return f"{records} records"

    done.update(_map_parts(_PartTask(cfg, output), [dataclasses.asdict(p) for p in todo],
                           Meter("curate: parts", len(todo), progress, unit="parts"), note))
    return [done[p.index] for p in parts], len(parts) - len(todo)


def _map_parts(fn, rows: list[dict], meter, note=lambda marker: "") -> dict[int, dict]:
    """fn over one row per part, one Ray Data task each (retried by Ray Data when a node dies),
    streaming: {part index: marker} as they finish, with progress."""
    import ray

    from cluster.resources import curation_task_args   # CPUs per task: what brings up cpu_spot nodes

    if not rows:
        return {}
    items = ray.data.from_items(rows, override_num_blocks=len(rows))
    results = items.map_batches(fn, batch_size=1, batch_format="pyarrow", **curation_task_args())
    markers = {}
    for row in results.iter_rows():
        marker = json.loads(row["marker"])
        markers[row["index"]] = marker
        meter.update(len(markers), note(marker))
    return markers


class _PartTask:
    """map_batches function: part rows in, (index, marker JSON) rows out (parts.process_part)."""

    def __init__(self, cfg: CurateConfig, output: str):
        self.cfg, self.output = cfg, output

    def __call__(self, batch):
        store.configure_io(**io_settings(self.cfg))
        parts = [Part(**row) for row in batch.to_pylist()]
        markers = [process_part(p, self.cfg, self.output) for p in parts]
        return _marker_rows(parts, markers)


def _marker_rows(parts: list[Part], markers: list[dict]):
    import pyarrow as pa

    return pa.table({"index": [p.index for p in parts], "marker": [json.dumps(m) for m in markers]})


def _deduplicate(cfg: CurateConfig, parts: list[Part], markers: list[dict], output: str, cpus: int,
                 progress) -> int:
    """Dedup from the parts' signature files; the decisions are routed to the parts. Returns the
    number of label buckets (0 when nothing is a duplicate or dedup is off)."""
    if not (cfg.enabled("exact_dedup") or cfg.enabled("minhash_dedup")):
        return 0
    t = time.time()
    verify = f", estimated Jaccard >= {cfg.minhash_threshold}" if cfg.minhash_threshold > 0 else ""
    n_docs = sum(m["kept"] for m in markers)
    progress(f"curate: dedup of {n_docs} kept documents (exact hash + MinHash {cfg.bands}x{cfg.rows}{verify}, "
             f"word {cfg.ngram_size}-grams)")
    routed = store.join(output, "dedup", "by_part.done.json")
    if store.exists(routed):
        info = json.loads(store.read_bytes(routed))
        progress(f"curate: dedup finished in an earlier run ({info['rows']} duplicates)")
        return info["buckets"]
    io = io_settings(cfg)
    sigs = load_blocks([store.join(part_dir(output), m["sigs"]) for m in markers if m["kept"]], io)
    phases = PhaseStore(store.join(output, "dedup"), progress, io)
    labels = find_duplicates(sigs, cfg, num_partitions=cpus, progress=progress, phases=phases) if sigs else None
    if labels is None:
        labels, buckets = [], 0
    else:
        buckets = parts_for(num_rows(labels), cpus)
    n = route_labels(labels, output, buckets, io) if labels else 0
    if not labels:
        store.write_bytes(routed, json.dumps({"rows": 0, "buckets": 0}).encode())
    progress(f"curate: dedup marked {n} duplicates in {time.time() - t:.0f} s")
    return buckets


def _finalize(cfg: CurateConfig, parts: list[Part], markers: list[dict], output: str, buckets: int,
              progress) -> tuple[list[dict], int]:
    """Every part's duplicates, split, mixing and output files: one Ray Data task per part."""
    finals = read_markers({p.index: final_marker(output, p) for p in parts}, store.join(output, "final"))
    todo = [{**dataclasses.asdict(p), "data": markers[p.index]["data"]} for p in parts if p.index not in finals]
    finals.update(_map_parts(_FinalTask(cfg, output, buckets), todo,
                             Meter("curate: writing train/val", len(todo), progress, unit="parts")))
    return [finals[p.index] for p in parts], len(parts) - len(todo)


class _FinalTask:
    """map_batches function: part rows in, (index, final marker JSON) rows out (finalize_part)."""

    def __init__(self, cfg: CurateConfig, output: str, buckets: int):
        self.cfg, self.output, self.buckets = cfg, output, buckets

    def __call__(self, batch):
        store.configure_io(**io_settings(self.cfg))
        rows = batch.to_pylist()
        parts = [Part(**{k: v for k, v in r.items() if k != "data"}) for r in rows]
        markers = [finalize_part(p, {"data": r["data"]}, self.cfg, self.output, self.buckets)
                   for p, r in zip(parts, rows)]
        return _marker_rows(parts, markers)


def _part_rows(markers: list[dict], finals: list[dict]) -> list[dict]:
    """Per part: its input file and piece, records, kept after the per-document steps, and the
    train/val/rejected rows written."""
    rows = []
    for m, f in zip(markers, finals):
        part = m["part"]
        rows.append({"part": m["name"], "file": part["file"], "piece": f"{part['piece'] + 1}/{part['pieces']}",
                     "records": m["rows"], "kept_before_dedup": m["kept"], **f.get("written", {}),
                     "seconds": m["seconds"]})
    return rows


def _remove_stale_attempts(output: str, markers: list[dict]) -> None:
    """Part files of killed attempts (no marker names them)."""
    named = {m[k] for m in markers for k in ("data", "sigs")}
    for path in store.list_files(part_dir(output), ".parquet"):
        if path.rsplit("/", 1)[-1] not in named:
            fs, p = store.filesystem(path)
            fs.delete_file(p)


def io_settings(cfg: CurateConfig) -> dict:
    """store.configure_io's arguments from the config, passed to every task (a cluster's workers
    do not share the driver's environment)."""
    return {"anonymous": cfg.storage_anonymous, "max_attempts": cfg.storage_max_attempts}


def _check_weights(cfg: CurateConfig, files: list[str]) -> None:
    """A weight for a source no input has is a typo: say so rather than silently mix 1:1."""
    sources = {source_of(f) for f in files}
    unknown = sorted(set(cfg.source_weights) - sources)
    if unknown:
        raise ValueError(f"source_weights: no input source named {unknown[0]!r}; sources: {sorted(sources)}"
                         " (name an input with name=path)")
