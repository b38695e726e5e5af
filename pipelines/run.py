"""`bespoke run`: the whole lifecycle on one machine (or one cluster) with one command.

    bespoke run                                   # built-in demo corpus, defaults, embedded Ray
    bespoke run --config configs/tiny.yaml --set train.max_steps=50

Chains the stages in `pipelines/stages.py` over `runs/<name>/`, shows progress and elapsed time
per stage, prints the validation loss next to the unigram baseline, and writes `report.md`.
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from pipelines import stages
from pipelines.config import to_dict
from pipelines.report import write_run_report
from pipelines.run_config import RunConfig

_STAGE_FUNCS = {
    "curate": stages.stage_curate,
    "tokenize": stages.stage_tokenize,
    "pretrain": stages.stage_pretrain,
    "tune": stages.stage_tune,
    "finetune": stages.stage_finetune,
    "eval": stages.stage_eval,
    "generate": stages.stage_generate,
}


def _say(message: str) -> None:
    print(f"[bespoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_resolved_config(cfg: RunConfig) -> Path:
    cfg.paths.root.mkdir(parents=True, exist_ok=True)
    path = cfg.paths.root / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def run_lifecycle(cfg: RunConfig, progress=_say, restart_curation: bool = False) -> dict:
    """Run every stage in cfg.stages in order; returns timings and the headline numbers. Curation
    resumes an earlier run's output (same config) unless `restart_curation`."""
    from cluster import connect
    from cluster.resources import preflight

    start = time.perf_counter()
    progress(f"run {cfg.name!r}: stages {', '.join(cfg.stages)}; artifacts in {cfg.paths.root}")
    write_resolved_config(cfg)
    connect(cfg.num_cpus)
    for name in cfg.stages:  # every stage's resource request, checked before the first one starts
        preflight(name, cfg, progress)
    timings: dict[str, float] = {}
    results: dict = {}
    for i, name in enumerate(cfg.stages, 1):
        progress(f"[{i}/{len(cfg.stages)}] {name} ...")
        t0 = time.perf_counter()
        kwargs = {"restart": restart_curation} if name == "curate" else {}
        results[name] = _STAGE_FUNCS[name](cfg, progress, **kwargs)
        timings[name] = time.perf_counter() - t0
        elapsed = time.perf_counter() - start
        progress(f"[{i}/{len(cfg.stages)}] {name} done in {timings[name]:.0f}s (total {elapsed:.0f}s)")
    timings["total"] = time.perf_counter() - start
    report = write_run_report(cfg.paths.root, timings)
    summary = _headline(results, timings)
    _print_headline(summary, progress)
    progress(f"report: {report}")
    return summary


def _headline(results: dict, timings: dict) -> dict:
    summary: dict = {"timings": timings}
    tokens = results.get("tokenize")
    if tokens:
        summary["unigram_val_loss"] = tokens["unigram_val_loss"]
    if results.get("pretrain"):
        summary["pretrain_val_loss"] = results["pretrain"]["metrics"]["val_loss"]
    if results.get("tune"):
        summary["tune_best_val_loss"] = results["tune"]["best_metrics"]["val_loss"]
    if results.get("finetune"):  # {} when skipped (no finetune.data)
        summary["finetune_val_loss"] = results["finetune"]["metrics"]["val_loss"]
    if results.get("eval"):
        summary["eval"] = {k: results["eval"].get(k) for k in ("val_loss", "perplexity")}
        summary["eval"]["tasks"] = results["eval"].get("tasks")
    return summary


def _print_headline(summary: dict, progress) -> None:
    if "unigram_val_loss" in summary:
        progress(f"unigram baseline validation loss: {summary['unigram_val_loss']:.3f} nats/token")
    if "pretrain_val_loss" in summary:
        progress(f"pretrained model validation loss: {summary['pretrain_val_loss']:.3f} nats/token")
    if "tune_best_val_loss" in summary:
        progress(f"best Tune trial validation loss:  {summary['tune_best_val_loss']:.3f} nats/token")
    if "finetune_val_loss" in summary:
        progress(f"fine-tuned model, loss on held-out responses: {summary['finetune_val_loss']:.3f} nats/token")
    progress(f"total time {summary['timings']['total']:.0f}s")
