"""`run_curation`: raw files in, curated train/val parquet and a report out, on Ray Data.

    read -> extract -> blocklist -> normalize -> langid -> quality -> pii -> decontaminate
         -> exact + MinHash dedup (distributed components, hash join) -> split + mix -> write

Ray must be initialised by the caller (`cluster.connect()`; tests use the `ray_session` fixture):

    from pipelines.curation import CurateConfig, run_curation
    report = run_curation(CurateConfig(), ["data/*.warc.gz"], "runs/demo/curated")

Writes output_dir/train/*.parquet, output_dir/val/*.parquet (columns id, text, url, source, meta),
output_dir/rejected/*.parquet (every other row with its status, if cfg.write_rejected), and
output_dir/report.json / report.md. Returns the report dict. Train rows are repeated or
sampled by `cfg.source_weights` (mixing.py).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.curation.config import CurateConfig
from pipelines.curation.dedup import find_duplicates
from pipelines.curation.mixing import AssignSplit, repeat_rows
from pipelines.curation.readers import expand_inputs, read_documents, source_of
from pipelines.curation.report import build_report, count_rows, write_report
from pipelines.curation.shuffle import join_status, num_rows, parts_for
from pipelines.curation.steps import per_document_steps

OUTPUT_COLUMNS = ["id", "text", "url", "source", "meta"]


def run_curation(cfg: CurateConfig, inputs: list[str], output_dir: str, progress=print) -> dict:
    import ray

    started = time.time()
    files = expand_inputs(inputs)
    _check_weights(cfg, files)
    ctx = ray.data.DataContext.get_current()
    saved_order, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = _per_document(cfg, files, cpus, progress)
        ds = _deduplicate(ds, cfg, cpus, progress)
        split = AssignSplit(cfg.seed, cfg.val_fraction, cfg.source_weights)
        ds = ds.map_batches(split, batch_format="pyarrow").materialize()
        _write_outputs(ds, cfg, output_dir, progress)
        counts = count_rows(ds)
    finally:
        ctx.execution_options.preserve_order = saved_order
    order = ["read"] + [s.name for s in per_document_steps(cfg)] + [
        s for s in ("exact_dedup", "minhash_dedup") if cfg.enabled(s)] + ["mix"]
    report = build_report(counts, order, {"inputs": files, "output_dir": str(output_dir),
                                          "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                                          "source_weights": cfg.source_weights,
                                          "seconds": round(time.time() - started, 1)})
    write_report(report, output_dir)
    progress(f"curate: {report['input_docs']} docs in, {report['kept_docs']} kept "
             f"({report['train_docs']} train / {report['val_docs']} val), {report['dropped_docs']} "
             f"dropped, {report['errored_docs']} errored in {report['seconds']:.0f} s -> {output_dir}")
    return report


def _per_document(cfg: CurateConfig, files: list[str], cpus: int, progress):
    """Read and run the per-document steps, fused into one streaming pass, then materialise."""
    t = time.time()
    progress(f"curate: reading {len(files)} file(s)")
    ds = read_documents(files, cfg.batch_size, cfg.text_column)
    if len(files) < 2 * cpus:
        # One file is one read task; spread its rows so extraction uses every core.
        ds = ds.repartition(4 * cpus)
    from cluster.resources import curation_task_args   # CPUs per task: what brings up cpu_spot nodes

    steps = per_document_steps(cfg)
    for step in steps:
        ds = ds.map_batches(step, batch_format="pyarrow", batch_size=cfg.batch_size, **curation_task_args())
    progress(f"curate: {' -> '.join(['read'] + [s.name for s in steps])} (per document)")
    ds = ds.materialize()
    progress(f"curate: {ds.count()} records processed in {time.time() - t:.0f} s")
    return ds


def _deduplicate(ds, cfg: CurateConfig, cpus: int, progress):
    """Mark duplicates by a distributed join of dedup's (id, status) rows onto the documents."""
    import ray

    if not (cfg.enabled("exact_dedup") or cfg.enabled("minhash_dedup")):
        return ds
    t = time.time()
    verify = f", estimated Jaccard >= {cfg.minhash_threshold}" if cfg.minhash_threshold > 0 else ""
    progress(f"curate: dedup (exact hash + MinHash {cfg.bands}x{cfg.rows}{verify}, word {cfg.ngram_size}-grams)")
    labels = find_duplicates(ds, cfg, num_partitions=cpus, progress=progress)
    if labels is None:
        progress(f"curate: dedup found no duplicates in {time.time() - t:.0f} s")
        return ds
    progress(f"curate: dedup marked {num_rows(labels)} duplicates in {time.time() - t:.0f} s")
    docs = join_status(ds.to_arrow_refs(), labels, parts_for(ds.count(), cpus, ds.size_bytes()))
    return ray.data.from_arrow_refs(docs).materialize()


def _check_weights(cfg: CurateConfig, files: list[str]) -> None:
    """A weight for a source no input has is a typo: say so rather than silently mix 1:1."""
    sources = {source_of(f) for f in files}
    unknown = sorted(set(cfg.source_weights) - sources)
    if unknown:
        raise ValueError(f"source_weights: no input source named {unknown[0]!r}; sources: {sorted(sources)}"
                         " (name an input with name=path)")


def _write_outputs(ds, cfg: CurateConfig, output_dir: str, progress) -> None:
    out = Path(output_dir)
    for sub in ("train", "val", "rejected"):
        shutil.rmtree(out / sub, ignore_errors=True)  # a rerun must not add to old shards
        (out / sub).mkdir(parents=True, exist_ok=True)
    progress(f"curate: writing parquet to {out}")
    _write_split(ds, "train", OUTPUT_COLUMNS, cfg.num_shards, out / "train")
    _write_split(ds, "val", OUTPUT_COLUMNS, 1, out / "val")
    if cfg.write_rejected:
        _write_split(ds, "", OUTPUT_COLUMNS + ["status"], cfg.num_shards, out / "rejected")


def _write_split(ds, split: str, columns: list[str], shards: int, path: Path) -> None:
    """The rows of one split; train rows repeated by their mixing copies."""
    def select(t: pa.Table) -> pa.Table:
        t = t.filter(pc.equal(t["split"], split))
        return (repeat_rows(t) if split == "train" else t).select(columns)

    part = ds.map_batches(select, batch_format="pyarrow")
    if part.count() == 0:
        return
    part.repartition(shards).write_parquet(str(path))
