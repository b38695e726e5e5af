"""Distributed checkpoints of a training run, reported to Ray Train.

A checkpoint folder holds:
  dcp/        model + optimizer state from every rank (torch.distributed.checkpoint), re-shardable,
              so a resumed run may use a different number of workers
  model/      the full model as safetensors + config.json + tokenizer.json (rank 0), what
              evaluation, generation and export read
  state.json  the step (the data position and schedule are functions of it)
Ray Train copies the folder into its storage only after every rank reported, so a half-written
checkpoint is never what `ray.train.get_checkpoint()` returns.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from modeling.checkpoint import save_model
from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.lora import lora_scales, merge_lora_state_dict
from modeling.tokenizer import Tokenizer
from pipelines.training.parallelize import unwrap


def save_checkpoint(directory: str, model, optimizer, step: int, model_cfg: ModelConfig,
                     tokenizer_dir: str, rank: int) -> None:
    """Every rank writes its shard of model+optimizer (DCP); rank 0 also writes the plain model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=os.path.join(directory, "dcp"))
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        plain = build_model(model_cfg)
        plain.load_state_dict(merge_lora_state_dict(full, lora_scales(unwrap(model))))  # adapters folded in
        save_model(os.path.join(directory, "model"), plain, Tokenizer.load(tokenizer_dir))
        Path(directory, "state.json").write_text(json.dumps({"step": step}))


def load_checkpoint(directory: str, model, optimizer) -> int:
    """Restore model+optimizer shards (re-sharded to this world size); returns the next step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=os.path.join(directory, "dcp"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return json.loads(Path(directory, "state.json").read_text())["step"]


def report_with_checkpoint(metrics, model, optimizer, step, mcfg, tokenizer_dir, rank) -> None:
    import ray.train

    directory = tempfile.mkdtemp(prefix="bespoke-ckpt-")
    try:
        save_checkpoint(directory, model, optimizer, step, mcfg, tokenizer_dir, rank)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
