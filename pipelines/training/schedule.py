"""Optimizer and learning-rate schedules for the training loop.

    optimizer = make_optimizer(model, train_cfg)
    scheduler = make_scheduler(optimizer, train_cfg)   # call scheduler.step() after optimizer.step()
    lr = lr_at(step, train_cfg)                        # the same schedule as a pure function

Schedules (train.schedule), both after a linear warmup of train.warmup_steps:
  cosine  decay from lr to lr * min_lr_ratio over the remaining steps (Loshchilov & Hutter 2017).
  wsd     warmup-stable-decay: hold lr, then decay to lr * min_lr_ratio over the last
          decay_fraction of max_steps. The shape is `linear` or `1-sqrt` (lr * (1 - sqrt(p)) for
          decay progress p), after Hu et al. 2024, "MiniCPM" (arXiv:2404.06395), which introduced
          WSD, and Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
          Training Durations" (arXiv:2405.18392), whose 1-sqrt cooldown over ~20% of the steps
          matches cosine. The stable phase lets a run be extended or branched before decaying.
The scheduler is torch's LambdaLR over lr_at, so its state (the step it has reached) goes into
checkpoints and per-group base learning rates (e.g. a higher one for adapters) scale alike.
"""
from __future__ import annotations

import math

import torch

from pipelines.training.config import TrainConfig


def _warmup(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * (step + 1) / cfg.warmup_steps


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based); lr_at(max_steps) is the floor."""
    if step < cfg.warmup_steps:
        return _warmup(step, cfg)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_start = cfg.max_steps - cfg._decay_steps()
        if step < decay_start:
            return cfg.lr
        progress = min(1.0, (step - decay_start) / cfg._decay_steps())
        remaining = 1 - math.sqrt(progress) if cfg.decay_shape == "1-sqrt" else 1 - progress
        return floor + (cfg.lr - floor) * remaining
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only: decaying norm gains and biases hurts (GPT-3).
    optimizer: muon moves the blocks' matrices (not embeddings or the head) to a Muon group at
    muon_lr (muon.py); the AdamW groups come first, so param_groups[0]["lr"] follows cfg.lr."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [p for n, p in named if cfg.optimizer == "muon" and _is_hidden_matrix(n, p)]
    in_muon = {id(p) for p in muon}
    decay = [p for n, p in named if p.dim() >= 2 and id(p) not in in_muon]
    no_decay = [p for n, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "muon":
        from pipelines.training.muon import MuonWithAdamW

        groups.append({"params": muon, "weight_decay": cfg.weight_decay, "lr": cfg.muon_lr, "muon": True})
        return MuonWithAdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    fused = torch.cuda.is_available() and cfg.use_gpu
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def _is_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    """A 2-D weight inside the blocks: not an embedding table or the output head (Muon's scope)."""
    return p.dim() == 2 and "emb" not in name and "head" not in name


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR scaling each group's base lr by lr_at(step) / cfg.lr; sets the step-0 lr now."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, cfg) / cfg.lr)
