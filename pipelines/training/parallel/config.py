"""Parallelism settings, owned by the parallelize step: `train.parallel` in the run config.

    ParallelConfig(tp_size=2)                          # 2-way tensor parallel (x data parallel on the rest)
    ParallelConfig(pp_size=2, pp_schedule="1f1b")      # blocks split over 2 pipeline stages

The data-parallel strategy stays `train.strategy` (ddp | fsdp); the data-parallel degree is what is
left of the world: num_workers / (tp_size * pp_size). Field checks run on construction; checks that
need the model (heads, layers) run in `check_model`, called where both configs meet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ParallelConfig:
    tp_size: int = 1                    # tensor-parallel ranks per group (attention heads, MLP width split)
    sequence_parallel: bool = True      # with TP: norms and the residual stream split along the sequence
    pp_size: int = 1                    # pipeline stages (blocks split evenly across them)
    pp_schedule: Literal["gpipe", "1f1b"] = "1f1b"
    pp_microbatches: int = 2            # microbatches per pipeline step; must divide train.batch_size
    activation_checkpointing: bool = False   # recompute each block's activations in backward
    compile: bool = False               # torch.compile each block and the loss (costs compile time; measure first)
    mixed_precision: bool = True        # on GPU: bf16 compute (FSDP2: bf16 parameters, fp32 gradient
                                        # reduction; one GPU or DDP: bf16 autocast over fp32 weights)
    fsdp_cpu_offload: bool = False      # FSDP2: keep sharded parameters and optimizer state in CPU memory

    def __post_init__(self) -> None:
        for name in ("tp_size", "pp_size", "pp_microbatches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.pp_schedule not in ("gpipe", "1f1b"):
            raise ValueError(f"pp_schedule: {self.pp_schedule!r} is not one of ['gpipe', '1f1b']")
        if self.tp_size > 1 and self.pp_size > 1:
            raise ValueError("tp_size: tensor and pipeline parallel together are not supported yet; "
                             "set tp_size or pp_size to 1")
        if self.pp_size > 1 and self.pp_microbatches < self.pp_size:
            raise ValueError(f"pp_microbatches: must be >= pp_size ({self.pp_size}) to fill the "
                             f"pipeline, got {self.pp_microbatches}")

    @property
    def model_parallel(self) -> int:
        """Ranks that together hold one model replica."""
        return self.tp_size * self.pp_size

    def check_world(self, num_workers: int, batch_size: int) -> None:
        """Errors name the TrainConfig field at fault (the loader prefixes `train.`)."""
        if num_workers % self.model_parallel:
            raise ValueError(f"num_workers: must be a multiple of parallel.tp_size * parallel.pp_size "
                             f"= {self.model_parallel}, got {num_workers}")
        if self.pp_size > 1 and batch_size % self.pp_microbatches:
            raise ValueError(f"batch_size: must be divisible by parallel.pp_microbatches "
                             f"({self.pp_microbatches}), got {batch_size}")

    def check_model(self, model) -> None:
        """Checks against a ModelConfig; messages name the full key (`train.parallel.tp_size: ...`)."""
        tp, pp = self.tp_size, self.pp_size
        if (tp > 1 or pp > 1) and model.arch != "decoder_only":
            raise ValueError(f"train.parallel: tensor and pipeline parallel need model.arch "
                             f"decoder_only, got {model.arch!r}")
        if tp > 1:
            for name, heads in (("n_heads", model.n_heads), ("n_kv_heads", model.kv_heads)):
                if heads % tp:
                    raise ValueError(f"train.parallel.tp_size: {tp} must divide model.{name} ({heads})")
            if model.ffn_dim % tp:
                raise ValueError(f"train.parallel.tp_size: {tp} must divide the feed-forward width ({model.ffn_dim})")
            if self.sequence_parallel and (model.positions != "rope" or model.norm_position != "pre"):
                raise ValueError("train.parallel.sequence_parallel: needs rope positions and pre-norm "
                                 "(a position table is added to the whole sequence); set it to false")
        if pp > 1:
            if model.n_layers % pp:
                raise ValueError(f"train.parallel.pp_size: {pp} must divide model.n_layers ({model.n_layers})")
            if model.tie_embeddings:
                raise ValueError("train.parallel.pp_size: pipeline stages cannot share the embedding "
                                 "with the LM head; set model.tie_embeddings: false")
            if model.positions != "rope":
                raise ValueError(f"train.parallel.pp_size: pipeline stages need rope positions, "
                                 f"got model.positions {model.positions!r}")
