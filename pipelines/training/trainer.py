"""Pretraining driver: launch the train loop on Ray Train workers with `TorchTrainer`.

    bespoke pretrain --config configs/demo.yaml     # reads runs/<name>/tokens, writes runs/<name>/train

`run_pretrain` builds a TorchTrainer (one worker per data-parallel rank), with checkpoints kept by
Ray Train under `out_dir/<name>/checkpoint_*` and the whole group restarted from the latest one
after a worker dies (`FailureConfig`). It returns where the best model folder is and the metrics.
Checkpoints are kept by validation loss (the best `keep_checkpoints`, plus always the latest, which a
restart resumes from), so early stopping never deletes the best one. `train.resume_from` starts the
run from a chosen checkpoint, on any number of workers; it is checked here before workers start.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from cluster.storage import local_model_dir
from modeling.config import ModelConfig
from pipelines.training.config import TrainConfig
from pipelines.token_shards import read_meta
from pipelines.training.loop import train_loop_per_worker


@dataclass
class TrainResult:
    model_dir: str               # best checkpoint's plain model folder (safetensors + tokenizer)
    checkpoint_dir: str          # the Ray Train checkpoint holding it (dcp/, model/, state.json)
    metrics: dict                # metrics reported with that checkpoint
    history_path: str            # rank 0's history.jsonl (every logged step)
    run_path: str                # Ray Train's run folder
    model_config: dict = field(default_factory=dict)


def resolve_model_config(model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir: str | Path) -> ModelConfig:
    """Take the vocabulary size from the tokenizer and check the context fits the model."""
    meta = read_meta(str(tokens_dir))
    if train_cfg.seq_len > model_cfg.max_seq_len:
        raise ValueError(f"train.seq_len ({train_cfg.seq_len}) exceeds model.max_seq_len "
                         f"({model_cfg.max_seq_len}): lower one or raise the other")
    train_cfg.parallel.check_model(model_cfg)      # heads and layers split evenly over TP / PP ranks
    return dataclasses.replace(model_cfg, vocab_size=meta["vocab_size"])


def loop_config(model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir, tokenizer_dir, log_dir) -> dict:
    """The plain-data config every worker receives (dataclasses do not cross process boundaries)."""
    return {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
            "tokens_dir": _absolute(tokens_dir),
            "tokenizer_dir": str(Path(tokenizer_dir).resolve()), "log_dir": str(Path(log_dir).resolve())}


def _absolute(path) -> str:
    """A local path made absolute (workers run elsewhere in the file system); URLs kept."""
    from pipelines.curation import store

    return str(path) if store.is_url(str(path)) else str(Path(path).resolve())


def build_trainer(model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir, tokenizer_dir,
                  out_dir, name: str = "pretrain", callbacks: list | None = None,
                  fault_injection: dict | None = None, storage_path: str = ""):
    """A ready-to-fit TorchTrainer; Tune trials call this with their own name and callbacks.

    fault_injection ({"step", "rank", "marker"}) kills one worker once, for fault-tolerance tests.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from cluster.resources import train_scaling_config

    model_cfg = resolve_model_config(model_cfg, train_cfg, tokens_dir)
    if train_cfg.resume_from:
        train_cfg = check_resume_from(train_cfg, model_cfg)
    out_dir = Path(out_dir).resolve()
    config = loop_config(model_cfg, train_cfg, tokens_dir, tokenizer_dir, out_dir / name / "logs")
    config["fault_injection"] = fault_injection
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        # What each worker asks for (CPUs, a GPU with use_gpu) comes from cluster/resources.py, the
        # same declaration the autoscaler docs and `bespoke submit` preflight use.
        scaling_config=train_scaling_config(train_cfg),
        run_config=RunConfig(
            # storage_path: a URI (s3://, gs://, file://) or shared path for checkpoints, else out_dir.
            name=name, storage_path=storage_path or str(out_dir), callbacks=callbacks,
            # Ray Train logs every checkpoint at INFO; the loop prints its own progress lines.
            logging_config=LoggingConfig(log_level="WARNING"),
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.keep_checkpoints,
                                               checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min")),
    )


def check_resume_from(train_cfg: TrainConfig, model_cfg: ModelConfig) -> TrainConfig:
    """Refuse an incomplete checkpoint or one of another model shape, with the reason; the path
    made absolute (workers may run elsewhere in the file system). Remote URIs pass unchecked."""
    from pipelines.training.checkpointing import IncompleteCheckpoint, verify_checkpoint

    path = train_cfg.resume_from
    if "://" in path:
        return train_cfg
    try:
        state = verify_checkpoint(path)
    except IncompleteCheckpoint as exc:
        raise ValueError(f"train.resume_from: {exc}") from None
    saved = {k: v for k, v in state["model_config"].items() if k != "vocab_size"}
    ours = {k: v for k, v in dataclasses.asdict(model_cfg).items() if k != "vocab_size"}
    diff = sorted(k for k in saved.keys() | ours.keys() if saved.get(k) != ours.get(k))
    if diff or state["model_config"]["vocab_size"] != model_cfg.vocab_size:
        raise ValueError(f"train.resume_from: {path} holds a different model (model.{', model.'.join(diff or ['vocab_size'])} "
                         f"differ): resume needs the same model config")
    if state["step"] >= train_cfg.max_steps:
        raise ValueError(f"train.resume_from: {path} is at step {state['step']}, not before "
                         f"train.max_steps={train_cfg.max_steps}: raise max_steps to train further")
    return dataclasses.replace(train_cfg, resume_from=str(Path(path).resolve()))


def best_of(result, out_dir, name: str) -> TrainResult:
    """Pick the kept checkpoint with the lowest validation loss."""
    if result.error:
        raise result.error
    candidates = [(ckpt, m) for ckpt, m in (result.best_checkpoints or []) if "val_loss" in m]
    if not candidates:
        raise RuntimeError(f"training run {name} reported no checkpoint")
    ckpt, metrics = min(candidates, key=lambda cm: cm[1]["val_loss"])
    run_path = Path(out_dir).resolve() / name
    model_dir = local_model_dir(ckpt, run_path / "best_model")   # copied here from remote storage
    config = json.loads((model_dir / "config.json").read_text())["model"]
    return TrainResult(model_dir=str(model_dir), checkpoint_dir=ckpt.path,
                       metrics=dict(metrics), history_path=str(run_path / "logs" / "history.jsonl"),
                       run_path=str(run_path), model_config=config)


def run_pretrain(model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir, tokenizer_dir,
                 out_dir, name: str = "pretrain", fault_injection: dict | None = None) -> TrainResult:
    """Train on Ray Train (Ray must be initialised) and return the best checkpoint."""
    trainer = build_trainer(model_cfg, train_cfg, tokens_dir, tokenizer_dir, out_dir, name,
                            fault_injection=fault_injection, storage_path=train_cfg.storage_path)
    return best_of(trainer.fit(), out_dir, name)
