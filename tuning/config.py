"""Search configuration for `bespoke tune`: the space, the ASHA scheduler and the trial budget.

Errors start with the field name so the run-config loader can prefix the section (`tune.lr_min: ...`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TuneConfig:
    num_samples: int = 4                      # trials
    lr_min: float = 1e-3                      # learning rate is sampled log-uniformly in [lr_min, lr_max]
    lr_max: float = 1e-2
    batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    max_steps: int = 45                       # optimizer steps per trial (the ASHA max budget)
    eval_every: int = 15                      # steps per Tune iteration (one report each)
    grace_period: int = 2                     # iterations before ASHA may stop a trial
    reduction_factor: int = 2
    max_concurrent_trials: int = 2
    workers_per_trial: int = 1                # Ray Train workers inside each trial
    metric: Literal["val_loss"] = "val_loss"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_steps", "eval_every", "grace_period",
                     "max_concurrent_trials", "workers_per_trial"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"lr_min: need 0 < lr_min <= lr_max, got {self.lr_min} and {self.lr_max}")
        if not self.batch_sizes or any(b <= 0 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes: must be a non-empty list of positive integers, got {self.batch_sizes}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor: must be >= 2, got {self.reduction_factor}")
        if self.eval_every > self.max_steps:
            raise ValueError(f"eval_every: {self.eval_every} exceeds max_steps {self.max_steps}; no trial would report")
