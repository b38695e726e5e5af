"""Evaluate stage: held-out perplexity, bits per byte and lm-eval tasks on checkpoints, on Ray.

    bespoke eval --config configs/demo.yaml     # via the CLI, or in Python:
    run_eval(EvalConfig(), "runs/demo/checkpoint", "runs/demo/tokens", "runs/demo/curated",
             "runs/demo/eval")
    run_eval_many(EvalConfig(), {"pretrain": "runs/a/model", "tuned": "runs/b/model"}, ...)

The driver builds the local task files once and writes the reports; the model work fans out as
Ray tasks (jobs.py), one per (checkpoint, perplexity) and one per (checkpoint, lm-eval task), each
loading its own model replica, and the results are merged per checkpoint. Without an initialised
Ray the same jobs run one after another in this process. Outputs in `out_dir`: `results.json`,
`report.md`, `tasks/` (the generated task files); run_eval_many writes one such folder per
checkpoint under out_dir plus `compare.md` and `compare.json` (checkpoints side by side, chance
marked). A checkpoint is a bespokelm model folder, a Ray Train checkpoint holding `model/`, or an
exported Hugging Face Llama folder.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable


from pipelines.curation import store
from pipelines.evaluation.config import EvalConfig
from pipelines.evaluation.jobs import gather, lm_eval_job, model_folder, perplexity_job, submit
from pipelines.evaluation.tables import compare, fmt, single_report
from pipelines.evaluation.tasks import write_tasks

Progress = Callable[[str], None]


def run_eval(cfg: EvalConfig, checkpoint_dir: str | Path, tokens_dir: str | Path | None,
             curated_dir: str | Path | None, out_dir: str | Path, progress: Progress = print) -> dict:
    """Measure one checkpoint; writes results.json and report.md to out_dir and returns the results.

    tokens_dir=None skips perplexity; curated_dir is needed by bespoke_cloze and for bits per byte.
    """
    out_dir = Path(out_dir)
    results = _evaluate(cfg, {"model": checkpoint_dir}, tokens_dir, curated_dir, out_dir / "tasks", progress)
    _write(out_dir, results["model"], progress)
    return results["model"]


def run_eval_many(cfg: EvalConfig, checkpoints: dict[str, str | Path] | list, tokens_dir: str | Path | None,
                  curated_dir: str | Path | None, out_dir: str | Path, progress: Progress = print) -> dict:
    """Measure several checkpoints side by side (a list is labelled by folder names).

    Writes out_dir/<label>/{results.json,report.md}, out_dir/compare.md (one column per checkpoint,
    chance marked) and out_dir/compare.json ({label: results}); returns {label: results}.
    """
    out_dir = Path(out_dir)
    if not isinstance(checkpoints, dict):
        checkpoints = dict(zip(unique_labels(checkpoints), checkpoints))
    results = _evaluate(cfg, checkpoints, tokens_dir, curated_dir, out_dir / "tasks", progress)
    for label, res in results.items():
        _write(out_dir / label, res, progress)
    compare(results, out_dir / "compare.md")
    (out_dir / "compare.json").write_text(json.dumps(results, indent=2))
    progress(f"evaluate: wrote {out_dir / 'compare.md'} and compare.json")
    return results


def unique_labels(paths: list) -> list[str]:
    """Shortest distinct path suffixes: [a/trial_1/model, a/trial_2/model] -> trial_1/model, trial_2/model."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f"checkpoints listed twice: {paths}")


def _evaluate(cfg: EvalConfig, checkpoints: dict, tokens_dir, curated_dir, task_dir: Path,
              progress: Progress) -> dict[str, dict]:
    """Submit every (checkpoint, job) pair at once, wait, and merge per checkpoint."""
    start = time.perf_counter()
    checkpoints = {label: _checked(path) for label, path in checkpoints.items()}
    # Build the task files first: cheap, and a missing input fails before any model work.
    built = write_tasks(cfg, curated_dir, task_dir)
    progress("evaluate: built " + ", ".join(f"{n} ({b['examples']} examples)" for n, b in built.items()))
    meta = _read_meta(tokens_dir) if tokens_dir is not None else None
    handles = {}
    for label, ckpt in checkpoints.items():
        if meta is not None:
            handles[label, "perplexity"] = submit(perplexity_job, cfg, ckpt, _absolute(tokens_dir), meta)
        for task in cfg.tasks:
            handles[label, task] = submit(lm_eval_job, cfg, ckpt, str(task_dir.resolve()), task)
    progress(f"evaluate: {len(handles)} jobs over {len(checkpoints)} checkpoint(s), one model replica each")
    done = gather(handles, progress)
    bytes_per_token = _bytes_per_token(meta, curated_dir) if meta is not None else None
    merged = {}
    for label, ckpt in checkpoints.items():
        res: dict = {"checkpoint": ckpt}
        timing: dict = {}
        if meta is not None:
            res.update(_held_out(done[label, "perplexity"], meta, bytes_per_token))
            timing["perplexity_s"] = done[label, "perplexity"]["seconds"]
        res["tasks"] = {t: task_entry(done[label, t], t, built[t]) for t in cfg.tasks}
        res["lm_eval_version"] = done[label, cfg.tasks[0]]["lm_eval_version"]
        timing["tasks_s"] = {t: done[label, t]["seconds"] for t in cfg.tasks}
        timing["lm_eval_s"] = round(sum(timing["tasks_s"].values()), 2)
        res.update(timing={**timing, "total_s": round(time.perf_counter() - start, 2)}, config=asdict(cfg))
        _say(label, res, progress)
        merged[label] = res
    return merged


def _checked(path) -> str:
    return str(model_folder(path))


def _absolute(path: str | Path) -> str:
    """A URL as it is, a local path made absolute (Ray workers may start in another folder)."""
    return str(path) if store.is_url(str(path)) else str(Path(path).resolve())


def _read_meta(tokens_dir: str | Path) -> dict:
    path = store.join(str(tokens_dir), "meta.json")
    if not store.exists(path):
        raise FileNotFoundError(f"{path} does not exist: run `bespoke tokenize` first")
    return json.loads(store.read_bytes(path))


def _bytes_per_token(meta: dict, curated_dir) -> float | None:
    """UTF-8 bytes per token of the validation text: chars/token (tokens/meta.json, the val split's
    own when recorded) times bytes/char of curated/val. None without curated data or chars/token."""
    val = meta.get("val") or {}
    chars_per_token = val["chars"] / val["tokens"] if val.get("chars") and val.get("tokens") \
        else meta.get("chars_per_token")
    files = store.list_files(store.join(str(curated_dir), "val"), ".parquet") if curated_dir is not None else []
    if not chars_per_token or not files:
        return None
    n_bytes = n_chars = 0
    for f in files:
        for text in store.read_table(f, columns=["text"]).column("text").to_pylist():
            n_bytes += len(text.encode("utf-8"))
            n_chars += len(text)
    return chars_per_token * n_bytes / n_chars if n_chars else None


def _held_out(ppl: dict, meta: dict, bytes_per_token: float | None) -> dict:
    """Loss, perplexity, bits per byte = loss / ln 2 / bytes per token, and the unigram bar."""
    bpb = ppl["loss"] / math.log(2) / bytes_per_token if bytes_per_token else None
    return {"val_loss": ppl["loss"], "perplexity": ppl["perplexity"], "val_tokens": ppl["tokens"],
            "bits_per_byte": bpb, "bytes_per_token": bytes_per_token,
            "unigram_val_loss": meta.get("unigram_val_loss")}


def task_entry(raw: dict, name: str, info: dict) -> dict:
    """lm-eval's `metric,filter` keys for one task (or group) -> acc / acc_stderr / acc_norm / n / chance.

    `acc` is the task's headline metric (`metric` says which: exact_match for GSM8K, the true
    probability mass for TruthfulQA MC2); every number lm-eval reported is kept under `metrics`.
    """
    res = raw["results"][name]
    metric = info["metric"]
    entry = {"acc": float(res[metric]), "acc_stderr": _stderr(res, metric)}
    if "acc_norm,none" in res:
        entry.update(acc_norm=float(res["acc_norm,none"]), acc_norm_stderr=_stderr(res, "acc_norm,none"))
    leaves = info.get("subtasks") or [name]
    entry["n"] = int(sum(raw["n-samples"].get(t, {}).get("effective", 0) for t in leaves))
    entry.update(chance=info["chance"], metric=metric,
                 metrics={k: v for k, v in res.items() if isinstance(v, (int, float))})
    if info.get("subtasks"):
        entry["subtasks"] = {t: raw["results"][t][metric] for t in leaves if t in raw["results"]}
    return entry


def _stderr(res: dict, metric: str) -> float | None:
    name, _, filt = metric.partition(",")
    value = res.get(f"{name}_stderr,{filt}")
    return float(value) if isinstance(value, (int, float)) else None


def _say(label: str, res: dict, progress: Progress) -> None:
    if "perplexity" in res:
        progress(f"evaluate: {label}: val loss {res['val_loss']:.4f} nats/token, perplexity "
                 f"{res['perplexity']:.2f}, {fmt(res['bits_per_byte'], 4)} bits/byte"
                 + ("" if res["unigram_val_loss"] is None else f" (unigram baseline {res['unigram_val_loss']:.4f})"))
    for name, m in res["tasks"].items():
        progress(f"evaluate: {label}: {name} {m['metric'].split(',')[0]} {m['acc']:.3f} ± {fmt(m['acc_stderr'])} "
                 f"(n={m['n']}, chance {m['chance']:.2f}, {res['timing']['tasks_s'][name]} s)")


def _write(out_dir: Path, results: dict, progress: Progress) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "report.md").write_text(single_report(results))
    progress(f"evaluate: wrote {out_dir / 'results.json'} and report.md")
