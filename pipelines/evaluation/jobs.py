"""Model work of the evaluate stage: each job loads its own model replica and runs as one Ray task.

    handles = {("trained", "mmlu_local"): submit(lm_eval_job, cfg, ckpt, task_dir, "mmlu_local")}
    results = gather(handles, print)     # {key: value}, all jobs side by side on Ray; a line per job

With Ray initialised a job is a Ray task sized by cfg.num_cpus / cfg.num_gpus (so on a cluster it
lands on a worker with those resources, and several jobs run at once when resources allow);
without Ray, jobs run one after another in this process when gathered.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable


from pipelines.evaluation.config import EvalConfig

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# lm-eval's tqdm bars and Hugging Face datasets' "Generating test split" bar, one per job: the
# driver prints one line per finished job instead (gather). --verbose keeps them.
NO_BARS_ENV = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def job_env(cfg: EvalConfig) -> dict[str, str]:
    """Environment of every job: offline, no progress bars (unless --verbose), plus the
    code-execution opt-in when the config gives it."""
    from cluster.quiet import verbose

    return {**OFFLINE_ENV, **({} if verbose() else NO_BARS_ENV),
            **({"HF_ALLOW_CODE_EVAL": "1"} if cfg.code_execution_allowed else {})}


class _Deferred:
    """A job to run in this process at gather time (no Ray)."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args

    def run(self):
        cfg = self.args[0]
        with _env(job_env(cfg)), _torch_threads(cfg.num_cpus):
            return self.fn(*self.args)


def submit(fn: Callable, cfg: EvalConfig, *args):
    """Start fn(cfg, *args) as a Ray task with the configured resources (deferred without Ray,
    or where Ray is not installed, e.g. a bare GPU box running the benchmark script)."""
    try:
        import ray
    except ImportError:
        return _Deferred(fn, (cfg, *args))
    if not ray.is_initialized():
        return _Deferred(fn, (cfg, *args))
    from cluster.resources import eval_task_options

    remote = ray.remote(fn).options(**eval_task_options(cfg), runtime_env={"env_vars": job_env(cfg)},
                                    max_retries=0)
    return remote.remote(cfg, *args)


def gather(handles: dict, progress: Callable[[str], None] | None = None) -> dict:
    """{key: handle} -> {key: result}; waits for every job (errors propagate). With `progress`, a
    line per finished job: jobs done of total, rate, ETA and which one finished."""
    from pipelines.progress import Meter

    meter = Meter("evaluate: jobs", len(handles), progress, unit="jobs", every_s=0) if progress else None
    values = {}
    pending = {h: k for k, h in handles.items() if not isinstance(h, _Deferred)}
    while pending:
        import ray

        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        values[key] = ray.get(ready[0])
        _finished(meter, len(values), key, values[key])
    for key, handle in handles.items():
        if isinstance(handle, _Deferred):
            values[key] = handle.run()
            _finished(meter, len(values), key, values[key])
    return {k: values[k] for k in handles}


def _finished(meter, done: int, key, result) -> None:
    if meter is not None:
        name = ": ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        took = f" ({result['seconds']:.1f} s)" if isinstance(result, dict) and "seconds" in result else ""
        meter.update(done, f"{name} finished{took}")


@contextlib.contextmanager
def _env(env: dict[str, str]):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
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


def model_folder(path: str | Path) -> Path:
    """The folder holding model.safetensors: `path` itself (ours, or an exported Hugging Face Llama
    folder) or `path/model` (a Ray Train checkpoint). FileNotFoundError otherwise."""
    path = Path(path).resolve()
    for candidate in (path, path / "model"):
        if (candidate / "model.safetensors").is_file() and (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path} holds no model.safetensors and config.json (nor model/ with them): "
                            "pass a bespokelm model folder, a training checkpoint, or an exported "
                            "Hugging Face Llama folder (`bespoke export`), or run `bespoke pretrain` first")


def load_model_any(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) from our model folder or a Hugging Face Llama folder (told apart by
    config.json: ours has a `model` section, Hugging Face's a `model_type`)."""
    import json

    from modeling.checkpoint import load_model
    from modeling.hf import import_hf

    folder = model_folder(path)
    if "model_type" in json.loads((folder / "config.json").read_text()):
        model, tokenizer = import_hf(folder)
        return model.to(device), tokenizer
    return load_model(folder, device=device)


def load(cfg: EvalConfig, checkpoint_dir: str):
    import torch

    torch.set_num_threads(cfg.num_cpus)
    device = "cuda" if cfg.num_gpus and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_any(checkpoint_dir, device=device)
    if tokenizer is None:
        raise FileNotFoundError(f"{checkpoint_dir} has no bespokelm tokenizer.json (with bos/eos/pad): "
                                "save or export the model with its tokenizer")
    return model, tokenizer


def perplexity_job(cfg: EvalConfig, checkpoint_dir: str, tokens_dir: str, meta: dict) -> dict:
    from pipelines.evaluation.perplexity import perplexity

    t0 = time.perf_counter()
    model, _ = load(cfg, checkpoint_dir)
    if meta.get("vocab_size", model.cfg.vocab_size) != model.cfg.vocab_size:
        raise ValueError(f"tokens were made with vocab {meta['vocab_size']}, model has {model.cfg.vocab_size}")
    from pipelines.token_shards import split_tokens

    tokens = split_tokens(tokens_dir, "val", cfg.ppl_max_tokens + 1)   # the first val shards, in order
    out = perplexity(model, tokens, model.cfg.max_seq_len, cfg.ppl_max_tokens, cfg.batch_size)
    return {**out, "seconds": round(time.perf_counter() - t0, 2)}


def lm_eval_job(cfg: EvalConfig, checkpoint_dir: str, task_dir: str, task: str) -> dict:
    """One lm-eval task (or group) on one checkpoint; returns plain data (results, n-samples, time)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from pipelines.evaluation.lm import BespokeLM

    t0 = time.perf_counter()
    model, tokenizer = load(cfg, checkpoint_dir)
    lm = BespokeLM(model, tokenizer, batch_size=cfg.batch_size, max_gen_toks=cfg.max_gen_toks, seed=cfg.seed)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[task], num_fewshot=cfg.num_fewshot, limit=cfg.limit,
        task_manager=TaskManager(include_path=task_dir, include_defaults=False),
        log_samples=False, confirm_run_unsafe_code=cfg.code_execution_allowed, random_seed=cfg.seed, numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed)
    # Only plain data crosses back to the driver (the full dict holds configs with functions).
    return {"results": out["results"], "n-samples": out.get("n-samples", {}),
            "lm_eval_version": lm_eval.__version__, "seconds": round(time.perf_counter() - t0, 2)}
