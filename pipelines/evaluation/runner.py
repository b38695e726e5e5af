"""Evaluate stage: held-out perplexity and lm-eval tasks on a checkpoint, as Ray tasks.

    bespoke evaluate --config configs/demo.yaml     # via the CLI, or in Python:
    run_eval(EvalConfig(), "runs/demo/checkpoint", "runs/demo/tokens", "runs/demo/curated",
             "runs/demo/eval")

The driver builds the local task files and writes the report; the model work (perplexity, lm-eval)
runs in Ray tasks sized by cfg.num_cpus / cfg.num_gpus, so on a cluster it lands on a worker with
those resources. Without an initialised Ray it runs in this process. Outputs in `out_dir`:
`results.json` (numbers), `report.md` (a table) and `tasks/` (the generated task files).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.evaluation.config import EvalConfig
from pipelines.evaluation.tasks import write_tasks

_OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_eval(cfg: EvalConfig, checkpoint_dir: str | Path, tokens_dir: str | Path | None,
             curated_dir: str | Path | None, out_dir: str | Path,
             progress: Callable[[str], None] = print) -> dict:
    """Measure the checkpoint; writes results.json and report.md to out_dir and returns the results.

    tokens_dir=None skips perplexity; curated_dir is needed only by bespoke_cloze.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    checkpoint = Path(checkpoint_dir).resolve()
    if not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(f"{checkpoint} holds no model.safetensors: run `bespoke train` first")
    # Build the task files first: cheap, and a missing input fails before any model work.
    built = write_tasks(cfg, curated_dir, out_dir / "tasks")
    progress("evaluate: built " + ", ".join(f"{n} ({b['examples']} examples)" for n, b in built.items()))
    results: dict = {"checkpoint": str(checkpoint)}
    timing = {}
    if tokens_dir is not None:
        t0 = time.perf_counter()
        results.update(_held_out(cfg, str(checkpoint), Path(tokens_dir).resolve(), progress))
        timing["perplexity_s"] = _since(t0)
    t0 = time.perf_counter()
    results.update(_benchmarks(cfg, str(checkpoint), out_dir / "tasks", built, progress))
    timing["lm_eval_s"] = _since(t0)
    results.update(timing={**timing, "total_s": _since(start)}, config=asdict(cfg))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "report.md").write_text(_report(results))
    progress(f"evaluate: wrote {out_dir / 'results.json'} and report.md")
    return results


def _held_out(cfg: EvalConfig, checkpoint: str, tokens_dir: Path, progress) -> dict:
    """Perplexity on tokens/val.bin next to the unigram baseline from tokens/meta.json."""
    meta = _read_meta(tokens_dir)
    progress(f"evaluate: perplexity on up to {cfg.ppl_max_tokens:,} held-out tokens")
    ppl = _call(_perplexity_job, cfg, checkpoint, str(tokens_dir), meta)
    unigram = meta.get("unigram_val_loss")
    progress(f"evaluate: val loss {ppl['loss']:.4f} nats/token, perplexity {ppl['perplexity']:.2f}"
             + ("" if unigram is None else f" (unigram baseline {unigram:.4f})"))
    return {"val_loss": ppl["loss"], "perplexity": ppl["perplexity"], "val_tokens": ppl["tokens"],
            "unigram_val_loss": unigram}


def _benchmarks(cfg: EvalConfig, checkpoint: str, task_dir: Path, built: dict, progress) -> dict:
    """Run lm-eval on the local tasks; returns per-task metrics and the lm-eval version."""
    raw = _call(_lm_eval_job, cfg, checkpoint, str(task_dir.resolve()))
    tasks = _task_metrics(raw, built)
    for name, m in tasks.items():
        progress(f"evaluate: {name} acc {m['acc']:.3f} ± {_se(m['acc_stderr'])}, "
                 f"acc_norm {m['acc_norm']:.3f} (n={m['n']}, chance {m['chance']:.2f})")
    return {"tasks": tasks, "lm_eval_version": raw["lm_eval_version"]}


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def _read_meta(tokens_dir: str | Path) -> dict:
    path = Path(tokens_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `bespoke tokenize` first")
    return json.loads(path.read_text())


# ---- model work: runs in a Ray task when Ray is up ---------------------------------------------

def _call(fn: Callable, cfg: EvalConfig, *args):
    """Run fn(cfg, *args) as a Ray task with the configured resources, or here without Ray."""
    import ray

    if not ray.is_initialized():
        with _offline_env(), _torch_threads(cfg.num_cpus):
            return fn(cfg, *args)
    remote = ray.remote(fn).options(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                                    runtime_env={"env_vars": _OFFLINE_ENV}, max_retries=0)
    return ray.get(remote.remote(cfg, *args))


@contextlib.contextmanager
def _offline_env():
    old = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _torch_threads(n: int):
    # Exactly the CPUs we were given: more threads than cores slows CPU torch by several times.
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _load(cfg: EvalConfig, checkpoint_dir: str):
    import torch

    from modeling.checkpoint import load_model

    torch.set_num_threads(cfg.num_cpus)
    device = "cuda" if cfg.num_gpus and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model(checkpoint_dir, device=device)
    if tokenizer is None:
        raise FileNotFoundError(f"{checkpoint_dir} has no tokenizer.json: save the model with its tokenizer")
    return model, tokenizer


def _perplexity_job(cfg: EvalConfig, checkpoint_dir: str, tokens_dir: str, meta: dict) -> dict:
    from pipelines.evaluation.perplexity import perplexity

    model, _ = _load(cfg, checkpoint_dir)
    if meta.get("vocab_size", model.cfg.vocab_size) != model.cfg.vocab_size:
        raise ValueError(f"tokens were made with vocab {meta['vocab_size']}, model has {model.cfg.vocab_size}")
    tokens = np.memmap(Path(tokens_dir) / "val.bin", dtype=np.dtype(meta.get("dtype", "uint16")), mode="r")
    return perplexity(model, tokens, model.cfg.max_seq_len, cfg.ppl_max_tokens, cfg.batch_size)


def _lm_eval_job(cfg: EvalConfig, checkpoint_dir: str, task_dir: str) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from pipelines.evaluation.lm import BespokeLM

    model, tokenizer = _load(cfg, checkpoint_dir)
    lm = BespokeLM(model, tokenizer, batch_size=cfg.batch_size, max_gen_toks=cfg.max_gen_toks, seed=cfg.seed)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=list(cfg.tasks), num_fewshot=cfg.num_fewshot, limit=cfg.limit,
        task_manager=TaskManager(include_path=task_dir, include_defaults=False),
        log_samples=False, random_seed=cfg.seed, numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed)
    # Only plain data crosses back to the driver (the full dict holds configs with functions).
    return {"results": out["results"], "n-samples": out.get("n-samples", {}),
            "lm_eval_version": lm_eval.__version__}


# ---- results -----------------------------------------------------------------------------------

def _task_metrics(raw: dict, built: dict[str, dict]) -> dict:
    """lm-eval's "acc,none" style keys flattened to acc / acc_stderr / acc_norm / ... and n."""
    metrics = {}
    for name, info in built.items():
        res = raw["results"][name]
        entry = {}
        for metric in ("acc", "acc_norm"):
            entry[metric] = float(res[f"{metric},none"])
            stderr = res.get(f"{metric}_stderr,none")
            entry[f"{metric}_stderr"] = float(stderr) if isinstance(stderr, (int, float)) else None
        entry["n"] = int(raw["n-samples"].get(name, {}).get("effective", 0))
        entry["chance"] = info["chance"]
        metrics[name] = entry
    return metrics


def _report(results: dict) -> str:
    """A short markdown report: perplexity against the unigram bar, then one row per task."""
    lines = [f"# Evaluation of `{results['checkpoint']}`", ""]
    if "perplexity" in results:
        lines += ["| held-out | loss (nats/token) | perplexity | tokens |", "|---|---|---|---|",
                  f"| model | {results['val_loss']:.4f} | {results['perplexity']:.2f} | {results['val_tokens']:,} |"]
        if results.get("unigram_val_loss") is not None:
            u = results["unigram_val_loss"]
            lines.append(f"| unigram baseline | {u:.4f} | {np.exp(u):.2f} | |")
        lines.append("")
    lines += ["| task | n | acc | acc_norm | chance |", "|---|---|---|---|---|"]
    for name, m in results["tasks"].items():
        lines.append(f"| {name} | {m['n']} | {m['acc']:.3f} ± {_se(m['acc_stderr'])} | "
                     f"{m['acc_norm']:.3f} ± {_se(m['acc_norm_stderr'])} | {m['chance']:.2f} |")
    lines += ["", f"lm-eval {results['lm_eval_version']}; total {results['timing']['total_s']} s", ""]
    return "\n".join(lines)


def _se(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
