"""Each lifecycle stage as one function over the run folder; the CLI and `bespoke run` call these.

A stage reads the artifacts of the one before by path and writes its own (nothing passes in
memory), so every stage can run as its own `ray job submit` job on shared storage. Each stage
leaves a small JSON index in its folder (`train/result.json`, `tune/result.json`, ...) that the
next stage and the run report read.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

from pipelines.config import ConfigError
from pipelines.curation import store
from pipelines.run_config import RunConfig

Progress = Callable[[str], None]


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def _read_json(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `bespoke {stage}` for this run first")
    return json.loads(path.read_text())


def stage_curate(cfg: RunConfig, progress: Progress = print, inputs: list[str] | None = None,
                 output: str | None = None, restart: bool = False) -> dict:
    """Curate `inputs` (or cfg.inputs, or the built-in demo corpus) into curated/ parquet; a rerun
    into the same output resumes unless `restart`."""
    from pipelines.curation import build_demo_warc, run_curation

    inputs = list(inputs or cfg.inputs)
    if not inputs:
        warc = cfg.paths.data / "demo.warc.gz"
        progress(f"curate: building the demo corpus (stdlib documentation as web pages) at {warc}")
        warc.parent.mkdir(parents=True, exist_ok=True)
        manifest = build_demo_warc(str(warc), seed=cfg.demo.seed, n_modules=cfg.demo.n_modules)
        _write_json(cfg.paths.data / "manifest.json", manifest)
        inputs = [str(warc)]
    return run_curation(cfg.curate, inputs, str(output or cfg.paths.curated), progress=progress, restart=restart)


def stage_tokenize(cfg: RunConfig, progress: Progress = print) -> dict:
    from pipelines.tokenize import run_tokenize

    if cfg.model.arch == "encoder_decoder":
        return _prepare_pairs(cfg, progress)
    return run_tokenize(cfg.tokenize, cfg.paths.curated, cfg.paths.tokenizer, cfg.paths.tokens, progress)


def _prepare_pairs(cfg: RunConfig, progress: Progress) -> dict:
    """An encoder_decoder run: tokenizer (trained on the pairs if the run has none) and
    tokens/meta.json naming the pair files, which the training loop reads (pipelines/training/pairs.py)."""
    from pipelines.training.pairs import prepare_pairs

    meta_path = store.join(str(cfg.paths.tokens), "meta.json")
    if store.exists(meta_path) and json.loads(store.read_bytes(meta_path)).get("kind") != "pairs":
        raise ConfigError(f"model.arch: encoder_decoder, but {cfg.paths.tokens} holds a decoder-only run's "
                          "packed tokens; give this run its own name (--name)")
    return prepare_pairs(cfg.pairs, cfg.tokenize, cfg.paths.tokenizer, cfg.paths.tokens, progress)


def _fresh_or_resume(folder: Path, what: str, progress: Progress) -> None:
    """A finished stage (its result.json exists) is redone from scratch; an unfinished one is left
    in place so Ray Train resumes it from its latest checkpoint (same run name, same storage)."""
    if (folder / "result.json").is_file():
        progress(f"{what}: replacing the finished run in {folder}")
        shutil.rmtree(folder)
    elif folder.is_dir():
        progress(f"{what}: found an unfinished run in {folder}; resuming from its latest checkpoint")


def stage_pretrain(cfg: RunConfig, progress: Progress = print) -> dict:
    from pipelines.training import run_pretrain

    if cfg.model.arch == "encoder_decoder":      # tokenizer and pairs meta, unless the run has them
        _prepare_pairs(cfg, progress)
    name = "pretrain"
    if cfg.train.resume_from:
        # A new Ray Train run beside the old ones, so the checkpoint it starts from is never deleted.
        name = next(f"resumed-{i}" for i in range(1, 10_000) if not (cfg.paths.train / f"resumed-{i}").exists())
        progress(f"pretrain: starting from checkpoint {cfg.train.resume_from} as run {cfg.paths.train / name}")
    else:
        _fresh_or_resume(cfg.paths.train, "pretrain", progress)
    progress(f"pretrain: {cfg.train.max_steps} steps on {cfg.train.num_workers} Ray Train workers "
             f"({cfg.train.strategy})")
    result = run_pretrain(cfg.model, cfg.train, cfg.paths.tokens, cfg.paths.tokenizer, cfg.paths.train, name=name)
    summary = dataclasses.asdict(result)
    _write_json(cfg.paths.train / "result.json", summary)
    return summary


def stage_tune(cfg: RunConfig, progress: Progress = print, resume: str | None = None) -> dict:
    """Search hyperparameters (tuning/), or with `resume` finish an interrupted search in that folder."""
    from tuning.report import write_tune_report
    from tuning.search import resume_tune, run_tune

    if resume:
        result = resume_tune(resume, progress)
        tune_dir = Path(result.experiment_path).parent
    else:
        if cfg.paths.tune.is_dir():  # a new search starts clean; `--resume` continues an old one
            shutil.rmtree(cfg.paths.tune)
        result = run_tune(cfg.tune, cfg.model, cfg.train, cfg.paths.tokens, cfg.paths.tokenizer,
                          cfg.paths.tune, progress, run_config=dataclasses.asdict(cfg))
        tune_dir = cfg.paths.tune
    report = write_tune_report(tune_dir, cfg.tune.metric)
    summary = {**dataclasses.asdict(result), "report": report["report"], "best_yaml": report["best_yaml"]}
    _write_json(tune_dir / "result.json", summary)
    failed = sum(1 for t in result.trials if t["error"])
    progress(f"tune: best {result.best_config} val_loss {result.best_metrics['val_loss']:.3f}"
             f"{f'; {failed} trial(s) failed' if failed else ''}; report {report['report']}")
    return summary


def stage_finetune(cfg: RunConfig, progress: Progress = print, init_from: str | None = None) -> dict:
    """Fine-tune `init_from` (or finetune.init_from, or the run's best model) on finetune.data;
    skipped when no data is configured. Writes finetune/ (Ray Train run + result.json)."""
    from pipelines.training.finetune import run_finetune

    if not cfg.finetune.data:
        progress("finetune: skipped (no finetune.data configured)")
        return {}
    if not (init_from or cfg.finetune.init_from) and not (cfg.paths.train / "result.json").is_file() \
            and not (cfg.paths.tune / "result.json").is_file():
        raise FileNotFoundError(f"finetune: no trained model in {cfg.paths.root}; pass --from a model folder "
                                "or checkpoint, or run `bespoke pretrain` first")
    init_from = init_from or cfg.finetune.init_from or best_model(cfg)["model_dir"]
    _fresh_or_resume(cfg.paths.finetune, "finetune", progress)
    result = run_finetune(dataclasses.replace(cfg.finetune, init_from=init_from), cfg.train,
                          cfg.paths.finetune, progress=progress)
    summary = {**dataclasses.asdict(result), "base_model_dir": init_from, "method": cfg.finetune.method}
    _write_json(cfg.paths.finetune / "result.json", summary)
    progress(f"finetune: val loss on responses {result.metrics['val_loss']:.3f}; model in {result.model_dir}")
    return summary


def best_model(cfg: RunConfig) -> dict:
    """The model folder with the lowest validation loss among pretraining and the Tune trials.

    Both measure loss on the same validation windows (train.eval_tokens at train.seq_len).
    """
    candidates = []
    train = cfg.paths.train / "result.json"
    if train.is_file():
        t = json.loads(train.read_text())
        candidates.append({"source": "pretrain", "model_dir": t["model_dir"], "val_loss": t["metrics"]["val_loss"]})
    tune = cfg.paths.tune / "result.json"
    if tune.is_file():
        t = json.loads(tune.read_text())
        candidates.append({"source": "tune", "model_dir": t["best_model_dir"],
                           "val_loss": t["best_metrics"]["val_loss"], "config": t["best_config"]})
    if not candidates:
        raise FileNotFoundError(f"no trained model in {cfg.paths.root}: run `bespoke pretrain` or `bespoke tune` "
                                "first, or pass --checkpoint")
    return min(candidates, key=lambda c: c["val_loss"])


def eval_checkpoints(cfg: RunConfig, specs: list[str]) -> dict[str, str]:
    """`--checkpoint` values -> {label: model folder}.

    Each spec is a path, `label=path`, or one of this run's models by name: `pretrain` (the
    pretraining result), `tune` (the best Tune trial), `finetune` (the fine-tuned model), `best`
    (the lower validation loss of pretrain and tune).
    Unlabelled paths are labelled by their shortest distinct path suffix.
    """
    from pipelines.evaluation.runner import unique_labels

    named = {"pretrain": ("train", "model_dir"), "tune": ("tune", "best_model_dir"),
             "finetune": ("finetune", "model_dir")}
    labelled: dict[str, str] = {}
    unlabelled: list[str] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or "/" in label or Path(spec).exists():
            label, path = "", spec
        if not Path(path).exists() and path in named:
            folder, key = named[path]
            label, path = label or path, _read_json(getattr(cfg.paths, folder) / "result.json", path)[key]
        elif not Path(path).exists() and path == "best":
            label, path = label or "best", best_model(cfg)["model_dir"]
        if label:
            if label in labelled:
                raise ConfigError(f"--checkpoint: label {label!r} is used twice")
            labelled[label] = path
        else:
            unlabelled.append(path)
    if unlabelled:
        for label, path in zip(unique_labels(unlabelled), unlabelled):
            labelled[label if label not in labelled else path] = path
    return labelled


def stage_eval(cfg: RunConfig, progress: Progress = print, checkpoint: str | list[str] | None = None) -> dict:
    """Evaluate the run's best model, one given checkpoint, or several side by side.

    With two or more checkpoints (`--checkpoint A --checkpoint base=B`) every (checkpoint, task)
    pair is its own Ray task (one model replica each) and eval/ gets one folder per label plus
    compare.md and compare.json; the returned dict maps each label to its results.
    """
    from pipelines.evaluation import run_eval, run_eval_many

    specs = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint or [])
    store.configure_io()
    tokens = cfg.paths.tokens if store.exists(store.join(str(cfg.paths.tokens), "meta.json")) else None
    curated = cfg.paths.curated if store.list_files(store.join(str(cfg.paths.curated), "val"), ".parquet") else None
    if len(specs) > 1:
        checkpoints = eval_checkpoints(cfg, specs)
        progress(f"eval: {len(checkpoints)} checkpoints side by side: "
                 + ", ".join(f"{k}={v}" for k, v in checkpoints.items()))
        results = run_eval_many(cfg.eval, checkpoints, tokens, curated, cfg.paths.eval, progress)
        return {"checkpoints": checkpoints, "results": results, "compare": str(cfg.paths.eval / "compare.md")}
    if specs:
        (label, path), = eval_checkpoints(cfg, specs).items()
        chosen = {"source": f"--checkpoint {label}", "model_dir": path}
    else:
        chosen = best_model(cfg)
    progress(f"eval: evaluating {chosen['source']} model {chosen['model_dir']}")
    results = run_eval(cfg.eval, chosen["model_dir"], tokens, curated, cfg.paths.eval, progress)
    results["model"] = chosen
    _write_json(cfg.paths.eval / "results.json", results)
    return results


def stage_generate(cfg: RunConfig, progress: Progress = print, checkpoint: str | None = None,
                   prompts: list[str] | None = None) -> list[dict]:
    from pipelines.generate import run_generate

    model_dir = checkpoint or best_model(cfg)["model_dir"]
    samples = run_generate(cfg.generate, model_dir, prompts)
    _write_json(cfg.paths.generate / "samples.json",
                {"model_dir": model_dir, "config": dataclasses.asdict(cfg.generate), "samples": samples})
    for s in samples:
        progress(f"generate: {s['prompt']!r} -> {s['completion']!r}")
    return samples
