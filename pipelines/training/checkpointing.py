"""Distributed checkpoints of a training run, reported to Ray Train, and resuming from them.

    report_with_checkpoint(metrics, model, optimizer, scheduler, train_state, model_cfg, tokenizer_dir, rank)
    train_state = load_checkpoint(directory, model, optimizer, scheduler, rank, world, seed, dp_rank)
    verify_checkpoint(directory)      # raises IncompleteCheckpoint for a half-written folder

A checkpoint folder holds:
  dcp/          model + optimizer state from every rank (torch.distributed.checkpoint), re-shardable,
                so a resumed run may use a different number of workers
  rng/rank{r}.pt  rank r's random generators: torch CPU, CUDA (where present), numpy, python
  model/        the full model as safetensors + config.json + tokenizer.json (rank 0), what
                evaluation, generation and export read
  state.json    rank 0: the step reached and data_rows, the rows of the packed-token stream consumed
                by then (the data position: pipelines/training/data.py), the LR scheduler's state, early stopping's best val_loss and
                evaluations without improvement, the world size the rng/ files belong to, the model
                config. Written last, by rank 0.
A resume restores all of it, so a run resumed on the same number of workers replays the
uninterrupted run exactly (dropout included). On a different number of workers the rng/ files do
not map onto the new ranks: each rank re-seeds from (seed, step, data-parallel rank) instead.

Why a half-written checkpoint is never used:
  1. Each rank writes its part into a private temporary folder and only then calls
     ray.train.report, which uploads it into the run's storage.
  2. Ray Train's controller registers a checkpoint (the only ones ray.train.get_checkpoint() returns
     after a restart) only when every rank's report has arrived, i.e. after every upload finished.
     A crash mid-save or mid-upload leaves the previous checkpoint as the latest.
  3. A folder chosen by hand (train.resume_from) may still be an orphan of such a crash, so
     verify_checkpoint refuses it unless state.json, dcp/.metadata, every byte range the DCP
     metadata points into, and every rank's rng/ file are present.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from modeling.checkpoint import save_model
from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.lora import lora_scales, merge_lora_state_dict
from modeling.tokenizer import Tokenizer
from pipelines.training.parallelize import full_model_state, unwrap


class IncompleteCheckpoint(ValueError):
    """A folder that is not a complete checkpoint (half-written, or not a checkpoint at all)."""


def rng_state() -> dict:
    """This process's random generators, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_rank(seed: int, step: int, rank: int) -> None:
    """Seed every generator of one rank from (seed, step, rank): a fresh run, or a resume whose
    rng/ files belong to another world size. Ranks differ, so their dropout masks do."""
    value = (seed * 1_000_003 + step * 1009 + rank) % 2 ** 32
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value)


def save_checkpoint(directory: str, model, optimizer, scheduler, train_state: dict,
                    model_cfg: ModelConfig, tokenizer_dir: str, rank: int, world: int) -> None:
    """Every rank writes its DCP shard and its RNG state; rank 0 also the plain model and state.json."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rng = rng_state()
    os.makedirs(os.path.join(directory, "rng"), exist_ok=True)
    torch.save(rng, os.path.join(directory, "rng", f"rank{rank}.pt"))
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=os.path.join(directory, "dcp"))
    full = full_model_state(model)   # unsharded, from every pipeline stage, on rank 0
    if rank == 0:
        with torch.random.fork_rng(devices=[]):  # building the plain model draws random weights;
            plain = build_model(model_cfg)       # training must not see that (resumes replay it)
        plain.load_state_dict(merge_lora_state_dict(full, lora_scales(unwrap(model))))  # adapters folded in
        save_model(os.path.join(directory, "model"), plain, Tokenizer.load(tokenizer_dir))
        state = {**train_state, "world_size": world, "scheduler": scheduler.state_dict(),
                 "model_config": dataclasses.asdict(model_cfg)}
        Path(directory, "state.json").write_text(json.dumps(state, indent=1))


def verify_checkpoint(directory: str | os.PathLike) -> dict:
    """The checkpoint's state.json, after checking every file a resume reads is there in full."""
    from torch.distributed.checkpoint import FileSystemReader

    root = Path(directory)
    if not root.is_dir():
        raise IncompleteCheckpoint(f"{root} is not a folder")
    if not (root / "state.json").is_file():
        raise IncompleteCheckpoint(f"{root} has no state.json: not a finished checkpoint "
                                   "(half-written, or not a checkpoint folder)")
    state = json.loads((root / "state.json").read_text())
    missing = [k for k in ("step", "world_size", "scheduler", "model_config") if k not in state]
    if missing:
        raise IncompleteCheckpoint(f"{root}/state.json lacks {missing}: written by an older version "
                                   "that saved no scheduler/RNG state, so it cannot be resumed")
    if not (root / "dcp" / ".metadata").is_file():
        raise IncompleteCheckpoint(f"{root}/dcp/.metadata is missing: the distributed checkpoint is incomplete")
    for info in FileSystemReader(str(root / "dcp")).read_metadata().storage_data.values():
        shard = root / "dcp" / info.relative_path
        if not shard.is_file() or shard.stat().st_size < info.offset + info.length:
            raise IncompleteCheckpoint(f"{shard} is missing or shorter than its DCP metadata says: "
                                       "the distributed checkpoint is incomplete")
    missing = [r for r in range(state["world_size"]) if not (root / "rng" / f"rank{r}.pt").is_file()]
    if missing:
        raise IncompleteCheckpoint(f"{root}/rng/ lacks the RNG state of ranks {missing}: incomplete checkpoint")
    return state


def load_checkpoint(directory: str, model, optimizer, scheduler, rank: int, world: int, seed: int,
                    dp_rank: int | None = None) -> dict:
    """Restore model+optimizer (re-sharded to this world size), scheduler and RNG; returns the
    train state (step, early stopping...) with "rng_restored" saying whether RNG came back as saved
    (same world size) or was re-seeded from (seed, step, dp_rank) (dp_rank defaults to rank)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = verify_checkpoint(directory)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    sharded = {"model": model_sd, "optim": optim_sd}
    dcp.load(sharded, checkpoint_id=os.path.join(directory, "dcp"))
    set_state_dict(model, optimizer, model_state_dict=sharded["model"], optim_state_dict=sharded["optim"])
    scheduler.load_state_dict(state["scheduler"])
    # The scheduler sets the next step's lr (LambdaLR's own formula, so a plain resume is exact); the
    # optimizer state holds the lr of the run that saved it, which a PBT exploit must not keep.
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    state["rng_restored"] = state["world_size"] == world
    if state["rng_restored"]:
        set_rng_state(torch.load(os.path.join(directory, "rng", f"rank{rank}.pt"), weights_only=True))
    else:
        seed_rank(seed, state["step"], rank if dp_rank is None else dp_rank)
    return state


def report_with_checkpoint(metrics: dict, model, optimizer, scheduler, train_state: dict,
                           model_cfg: ModelConfig, tokenizer_dir: str, rank: int, world: int) -> None:
    """Save into a private temporary folder, then report it (Ray Train uploads it to storage)."""
    import ray.train

    directory = tempfile.mkdtemp(prefix="bespoke-ckpt-")
    try:
        save_checkpoint(directory, model, optimizer, scheduler, train_state, model_cfg, tokenizer_dir, rank, world)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
