"""Search configuration for `bespoke tune`: the space, the scheduler, the search algorithm, the budget.

    tune:
      search: random          # random | grid | optuna (Optuna's TPE)
      scheduler: asha         # asha | hyperband | pbt | fifo (no early stopping)
      lr_min: 1.0e-3          # lr is log-uniform in [lr_min, lr_max] (grid: grid_points log-spaced values)
      batch_sizes: [8, 16, 32]
      batch_rule: scale_lr    # scale_lr: lr is the lr at train.batch_size, scaled by lr_scaling;
                              # keep_tokens: grad_accum keeps train.batch_size * grad_accum rows per step

Errors start with the field name so the run-config loader can prefix the section (`tune.lr_min: ...`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SEARCHES = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "hyperband", "pbt", "fifo")


@dataclass
class TuneConfig:
    search: Literal["random", "grid", "optuna"] = "random"
    scheduler: Literal["asha", "hyperband", "pbt", "fifo"] = "asha"
    num_samples: int = 4                      # trials (grid: ignored, every combination runs once)
    lr_min: float = 1e-3                      # learning rate: log-uniform in [lr_min, lr_max]
    lr_max: float = 1e-2
    grid_points: int = 3                      # grid: this many log-spaced learning rates
    batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    batch_rule: Literal["scale_lr", "keep_tokens"] = "scale_lr"
    lr_scaling: Literal["sqrt", "linear"] = "sqrt"  # scale_lr: lr * (batch / train.batch_size) ** (1/2 or 1)
    warmup_steps: list[int] = field(default_factory=list)     # searched when non-empty (else derived)
    weight_decays: list[float] = field(default_factory=list)  # searched when non-empty (else train's)
    max_steps: int = 45                       # optimizer steps per trial (the schedulers' max budget)
    eval_every: int = 15                      # steps per Tune iteration (one report + checkpoint each)
    grace_period: int = 1                     # asha: iterations before a trial may be stopped
    reduction_factor: int = 2                 # asha/hyperband: keep 1/reduction_factor at each rung
    perturbation_interval: int = 1            # pbt: iterations between exploit/explore decisions
    max_concurrent_trials: int | None = None  # None: as many as the cluster's CPUs fit
    workers_per_trial: int = 1                # Ray Train workers inside each trial
    metric: Literal["val_loss"] = "val_loss"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_steps", "eval_every", "grace_period", "grid_points",
                     "perturbation_interval", "workers_per_trial"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials <= 0:
            raise ValueError(f"max_concurrent_trials: must be positive or null, got {self.max_concurrent_trials}")
        if self.search not in SEARCHES:
            raise ValueError(f"search: must be one of {SEARCHES}, got {self.search!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.search == "grid" and self.scheduler == "pbt":
            raise ValueError("scheduler: pbt mutates hyperparameters itself; use search: random with it")
        if self.batch_rule not in ("scale_lr", "keep_tokens"):
            raise ValueError(f"batch_rule: must be 'scale_lr' or 'keep_tokens', got {self.batch_rule!r}")
        if self.lr_scaling not in ("sqrt", "linear"):
            raise ValueError(f"lr_scaling: must be 'sqrt' or 'linear', got {self.lr_scaling!r}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"lr_min: need 0 < lr_min <= lr_max, got {self.lr_min} and {self.lr_max}")
        if not self.batch_sizes or any(b <= 0 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes: must be a non-empty list of positive integers, got {self.batch_sizes}")
        if any(w < 0 for w in self.warmup_steps):
            raise ValueError(f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        if any(w < 0 for w in self.weight_decays):
            raise ValueError(f"weight_decays: must be >= 0, got {self.weight_decays}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor: must be >= 2, got {self.reduction_factor}")
        if self.eval_every > self.max_steps:
            raise ValueError(f"eval_every: {self.eval_every} exceeds max_steps {self.max_steps}; no trial would report")

    @property
    def max_iterations(self) -> int:
        """Tune iterations (reports) of a trial that runs to the end."""
        return -(-self.max_steps // self.eval_every)
