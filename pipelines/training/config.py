"""Training configuration: optimisation, schedule, evaluation cadence and workers.

Errors start with the field name so the run-config loader can prefix the section (`train.lr: ...`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipelines.training.parallel.config import ParallelConfig


@dataclass
class TrainConfig:
    seq_len: int = 128              # tokens per packed row (must be <= model.max_seq_len)
    batch_size: int = 16            # rows per worker per micro-step
    grad_accum: int = 1             # micro-steps per optimizer step
    max_steps: int = 250            # optimizer steps
    lr: float = 3e-3                # peak learning rate (AdamW)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on the blocks' matrices, AdamW on the rest
    muon_lr: float = 0.02           # peak lr of the Muon matrices (same schedule; RMS matched to AdamW's)
    min_lr_ratio: float = 0.1       # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 25
    schedule: Literal["cosine", "wsd"] = "cosine"  # after warmup: cosine decay, or warmup-stable-decay
    decay_fraction: float = 0.2     # wsd: the last fraction of max_steps decays (Hägele et al. 2024: 20%)
    decay_shape: Literal["1-sqrt", "linear"] = "1-sqrt"  # wsd decay curve down to lr * min_lr_ratio
    weight_decay: float = 0.1       # on matrices only, not norms (GPT-3 / Llama practice)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0          # max global grad norm; 0 disables clipping
    eval_every: int = 50            # steps between validation + checkpoint
    eval_tokens: int = 65_536       # validation tokens per evaluation: the same windows whatever the
                                    # batch size or worker count, so runs and Tune trials compare fairly
    log_every: int = 10
    early_stopping_patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    early_stopping_min_delta: float = 0.0  # an improvement lowers the best val_loss by more than this
    resume_from: str | None = None  # a checkpoint folder to start from (model, optimizer, step, RNG)
    document_mask: bool = False     # attention never crosses the end-of-text token between packed docs
    # Packed tokens: "epoch" reads every window once per epoch in a seeded order (resumes exactly,
    # also on another number of workers); "random" samples windows with replacement. "random" stays
    # the default until a gap is understood: over 2 epochs of a 20k-token corpus, "epoch" ended
    # 0.04-0.06 nats worse on 3 seeds (at 0.61 epochs of tiny Shakespeare they are equal; RESULTS.md).
    data_order: Literal["epoch", "random"] = "random"
    # Mixing at read time ({source name: weight}, the names curation gives its inputs; others 1.0):
    # an epoch reads round(w x windows) of each source's shards, so reweighting needs no new
    # curation or tokenize run (pipelines/training/data.py). Validation is never weighted.
    source_weights: dict[str, float] = field(default_factory=dict)
    num_workers: int = 2            # Ray Train workers (data-parallel ranks)
    cpus_per_worker: int = 1        # also the torch thread count per worker (avoid oversubscription)
    use_gpu: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"   # data parallel: replicate (DDP) or shard (FSDP2)
    seed: int = 0
    max_failures: int = 1           # whole-group restarts from the latest checkpoint
    keep_checkpoints: int = 2
    # Where Ray Train keeps pretraining checkpoints: a URI it reads through pyarrow.fs (s3://bucket/ckpt,
    # gs://..., file://...) or a shared path; "" = runs_dir/<name>/train. The best model folder is
    # then copied back next to the run logs. Tune trials keep theirs under runs_dir.
    storage_path: str = ""
    # Tensor/pipeline parallel, activation checkpointing, compile (pipelines/training/parallel/config.py).
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.parallel, dict):     # from the plain-data loop config a worker receives
            self.parallel = ParallelConfig(**self.parallel)
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
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer: must be 'adamw' or 'muon', got {self.optimizer!r}")
        if not self.muon_lr > 0:
            raise ValueError(f"muon_lr: must be > 0, got {self.muon_lr}")
        if self.optimizer == "muon" and (self.strategy == "fsdp" or self.parallel.tp_size > 1):
            raise ValueError("optimizer: muon orthogonalizes whole weight matrices, which FSDP and tensor "
                             "parallel shard; use strategy: ddp with tp_size 1 (pipeline parallel is fine), "
                             "or optimizer: adamw")
        bad = {k: w for k, w in self.source_weights.items() if not isinstance(w, (int, float)) or w < 0}
        if bad:
            raise ValueError(f"source_weights: weights must be numbers >= 0, got {bad}")
        if self.data_order not in ("epoch", "random"):
            raise ValueError(f"data_order: must be 'epoch' or 'random', got {self.data_order!r}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule: must be 'cosine' or 'wsd', got {self.schedule!r}")
        if self.decay_shape not in ("1-sqrt", "linear"):
            raise ValueError(f"decay_shape: must be '1-sqrt' or 'linear', got {self.decay_shape!r}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction: must be in (0, 1], got {self.decay_fraction}")
        if self.schedule == "wsd" and self.warmup_steps > self.max_steps - self._decay_steps():
            raise ValueError(f"warmup_steps: wsd needs warmup ({self.warmup_steps}) to end before the "
                             f"decay starts at step {self.max_steps - self._decay_steps()}")
        for name in ("early_stopping_patience", "early_stopping_min_delta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.resume_from is not None and not str(self.resume_from).strip():
            raise ValueError("resume_from: must be a checkpoint folder or null, got an empty string")
        if self.max_failures < 0:
            raise ValueError(f"max_failures: must be >= 0, got {self.max_failures}")
        self.parallel.check_world(self.num_workers, self.batch_size)
        if self.strategy == "ddp" and self.parallel.tp_size > 1 and self.num_workers > self.parallel.model_parallel:
            raise ValueError("strategy: ddp cannot replicate tensor-parallel (DTensor) weights; use fsdp")
        if self.strategy == "ddp" and self.parallel.pp_size > 1 and self.num_workers > self.parallel.model_parallel:
            raise ValueError("strategy: ddp does not combine with pipeline stages (DDP's bucket "
                             "rebuild fails under the microbatch schedule); use fsdp")

    def _decay_steps(self) -> int:
        """Steps of the wsd decay phase (at least one)."""
        return max(1, round(self.decay_fraction * self.max_steps))
