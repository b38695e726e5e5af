"""Training configuration: optimisation, schedule, evaluation cadence and workers.

Errors start with the field name so the run-config loader can prefix the section (`train.lr: ...`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    seq_len: int = 128              # tokens per packed row (must be <= model.max_seq_len)
    batch_size: int = 16            # rows per worker per micro-step
    grad_accum: int = 1             # micro-steps per optimizer step
    max_steps: int = 250            # optimizer steps
    lr: float = 3e-3                # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1       # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 25
    weight_decay: float = 0.1       # on matrices only, not norms (GPT-3 / Llama practice)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0          # max global grad norm; 0 disables clipping
    eval_every: int = 50            # steps between validation + checkpoint
    eval_tokens: int = 65_536       # validation tokens per evaluation: the same windows whatever the
                                    # batch size or worker count, so runs and Tune trials compare fairly
    log_every: int = 10
    num_workers: int = 2            # Ray Train workers (data-parallel ranks)
    cpus_per_worker: int = 1        # also the torch thread count per worker (avoid oversubscription)
    use_gpu: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"
    seed: int = 0
    max_failures: int = 1           # whole-group restarts from the latest checkpoint
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        positive = ("seq_len", "batch_size", "grad_accum", "max_steps", "eval_every",
                    "eval_tokens", "log_every", "num_workers", "cpus_per_worker", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps: must be in [0, max_steps={self.max_steps}), got {self.warmup_steps}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay: weight_decay and grad_clip must be >= 0")
        if self.max_failures < 0:
            raise ValueError(f"max_failures: must be >= 0, got {self.max_failures}")
