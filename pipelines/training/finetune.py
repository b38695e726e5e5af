"""Fine-tuning: continue from a trained model on instruction data, fully, partly frozen, or with LoRA.

    bespoke finetune --config configs/finetune.yaml --from runs/demo/train/pretrain/checkpoint_.../model
    result = run_finetune(FinetuneConfig(init_from=..., data=["chat.jsonl"], method="lora"), train_cfg, out_dir)

The same Ray Train loop as pretraining (pipelines/training/loop.py) runs it: the loop config gains a
"finetune" entry, which `prepare_model` (called by the loop before parallelize) turns into the base
weights plus freezing or LoRA adapters, and a "data" entry of kind "instructions"
(pipelines/training/instructions.py), whose loss counts response tokens only. Checkpoints fold the
adapters back (modeling/lora.py), so every model/ folder holds plain weights that eval, generate and
export read unchanged. Methods:
  full    every parameter trains (the default)
  freeze  transfer learning: freeze_embeddings, freeze_first_k_blocks, or train_head_only (final norm
          and LM head; with tied embeddings the head is the embedding matrix, so that trains too)
  lora    low-rank adapters on the chosen projections; the base model stays frozen
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch.distributed as dist
from torch import nn

from modeling.lora import PROJECTIONS, LoraConfig, apply_lora, count_trainable
from pipelines.training.config import TrainConfig
from pipelines.training.metrics import say

METHODS = ("full", "freeze", "lora")


@dataclass
class FinetuneConfig:
    init_from: str = ""             # model folder, training checkpoint or stage folder; "" = the run's best model
    data: list[str] = field(default_factory=list)   # instruction jsonl files or globs; empty = no fine-tuning
    format: Literal["auto", "prompt_response", "messages"] = "auto"   # jsonl record form (instructions.py)
    val_fraction: float = 0.1       # share of the examples held out for validation loss on responses
    packing: bool = False           # lay whole examples end to end in full rows instead of padding each
    method: Literal["full", "freeze", "lora"] = "full"
    freeze_embeddings: bool = False  # method freeze: token (and learned position) embeddings
    freeze_first_k_blocks: int = 0   # method freeze: the first k transformer blocks
    train_head_only: bool = False    # method freeze: everything but the final norm and the LM head
    lora_rank: int = 8
    lora_alpha: float = 16.0         # updates are scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(PROJECTIONS))
    train: dict[str, Any] = field(default_factory=dict)   # train-section overrides, e.g. {lr: 3.0e-4, max_steps: 100}

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {list(METHODS)}, got {self.method!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction: must be in (0, 1), got {self.val_fraction}")
        if self.freeze_first_k_blocks < 0:
            raise ValueError(f"freeze_first_k_blocks: must be >= 0, got {self.freeze_first_k_blocks}")
        freezing = {"freeze_embeddings": self.freeze_embeddings, "train_head_only": self.train_head_only,
                    "freeze_first_k_blocks": self.freeze_first_k_blocks}
        if self.method != "freeze":
            used = [k for k, v in freezing.items() if v]
            if used:
                raise ValueError(f"{used[0]}: applies only with method 'freeze', got method {self.method!r}")
        elif not any(freezing.values()):
            raise ValueError("method: 'freeze' needs freeze_embeddings, freeze_first_k_blocks or train_head_only")
        elif self.train_head_only and (self.freeze_embeddings or self.freeze_first_k_blocks):
            raise ValueError("train_head_only: already freezes everything but the head; "
                             "drop freeze_embeddings and freeze_first_k_blocks")
        try:
            self.lora()
        except ValueError as exc:
            raise ValueError(f"lora_{exc}") from None
        unknown = sorted(set(self.train) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown:
            raise ValueError(f"train.{unknown[0]}: not a train setting; allowed: "
                             f"{', '.join(f.name for f in dataclasses.fields(TrainConfig))}")

    def lora(self) -> LoraConfig:
        return LoraConfig(self.lora_rank, self.lora_alpha, self.lora_dropout, list(self.lora_targets))

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The run's train section with this section's `train` overrides applied and validated."""
        from pipelines.config import ConfigError, build

        try:
            return build(TrainConfig, {**dataclasses.asdict(base), **self.train}, "train")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None   # "train.lr: ..."; the loader prefixes "finetune."


# ------------------------------------------------------------------------------------------------
# The model-preparation hook the training loop calls before parallelize
# ------------------------------------------------------------------------------------------------

def prepare_model(model: nn.Module, config: dict) -> nn.Module:
    """Pretraining: `model` as built. Fine-tuning (config["finetune"]): the base weights, then the
    method's freezing or adapters. Every rank does the same, so ranks hold identical models."""
    ft = config.get("finetune")
    if not ft:
        return model
    from modeling.checkpoint import load_model

    base, _ = load_model(ft["base_model_dir"])           # safetensors, strict
    if base.cfg != model.cfg:
        raise ValueError(f"finetune: {ft['base_model_dir']} holds a different model than the loop config")
    cfg = FinetuneConfig(**{k: v for k, v in ft.items() if k != "base_model_dir"})
    model = apply_method(base, cfg)
    if not dist.is_initialized() or dist.get_rank() == 0:
        say(f"[finetune] {cfg.method}: {describe(model)}")
    return model


def apply_method(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Freeze parameters or add LoRA adapters in place, per cfg.method; returns the model."""
    if cfg.method == "lora":
        return apply_lora(model, cfg.lora())
    if cfg.method == "freeze":
        _freeze(model, cfg)
    return model


def _freeze(model: nn.Module, cfg: FinetuneConfig) -> None:
    blocks = [*getattr(model, "encoder", []), *model.layers]
    if cfg.freeze_first_k_blocks > len(blocks):
        raise ValueError(f"freeze_first_k_blocks: {cfg.freeze_first_k_blocks} exceeds the model's {len(blocks)} blocks")
    if cfg.train_head_only:
        model.requires_grad_(False)
        # Tied embeddings: lm_head.weight is tok_emb.weight, so the embedding matrix trains as the head.
        model.norm.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        return
    if cfg.freeze_embeddings:
        # Tied embeddings: this freezes the LM head too (one tensor).
        model.tok_emb.requires_grad_(False)
        getattr(model.positions, "pos_emb", nn.Identity()).requires_grad_(False)
    for block in blocks[:cfg.freeze_first_k_blocks]:
        block.requires_grad_(False)


def describe(model: nn.Module) -> str:
    trainable, total = count_trainable(model)
    return f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)"


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------

def resolve_base(init_from: str | Path) -> Path:
    """The plain model folder behind `init_from`: a model folder, a Ray Train checkpoint (its
    model/), or a stage folder whose result.json names one (train/, tune/, finetune/)."""
    path = Path(init_from)
    if not str(init_from) or not path.exists():
        raise FileNotFoundError(f"finetune.init_from: {str(init_from)!r} does not exist; pass --from a model "
                                "folder or checkpoint, or run `bespoke pretrain` first")
    if (path / "model.safetensors").is_file():
        return path.resolve()
    if (path / "model" / "model.safetensors").is_file():
        return (path / "model").resolve()
    if (path / "result.json").is_file():
        result = json.loads((path / "result.json").read_text())
        for key in ("model_dir", "best_model_dir"):
            if result.get(key):
                return resolve_base(result[key])
    raise FileNotFoundError(f"finetune.init_from: {path} holds no model.safetensors, model/ folder or "
                            "result.json naming a model")


def finetune_loop_config(cfg: FinetuneConfig, train_cfg: TrainConfig, base: Path, log_dir: Path) -> tuple[dict, dict]:
    """(loop config, model config dict) for a fine-tuning run; checks the data before Ray starts."""
    from pipelines.training.instructions import InstructionData, expand_paths
    from pipelines.training.trainer import loop_config
    from modeling.config import ModelConfig

    model_cfg = ModelConfig.from_dict(json.loads((base / "config.json").read_text())["model"])
    if model_cfg.arch != "decoder_only":
        raise ValueError(f"init_from: {base} is an {model_cfg.arch} model; instruction data trains "
                         "decoder-only models (seq2seq pairs train through the pairs data kind)")
    if cfg.method == "lora" and train_cfg.parallel.model_parallel > 1:
        # peft wraps each target nn.Linear in a LoraLayer, which the TP plans and the pipeline
        # split do not know; LoRA runs with data parallelism (ddp or fsdp) only.
        raise ValueError("method: lora needs train.parallel.tp_size and pp_size 1 (data parallel only); "
                         "use method full or freeze with tensor or pipeline parallelism")
    if train_cfg.seq_len > model_cfg.max_seq_len:
        raise ValueError(f"train.seq_len: {train_cfg.seq_len} exceeds the base model's max_seq_len "
                         f"({model_cfg.max_seq_len}); set finetune.train.seq_len lower")
    if not (base / "tokenizer.json").is_file():
        raise FileNotFoundError(f"finetune.init_from: {base} has no tokenizer.json beside the weights")
    config = loop_config(model_cfg, train_cfg, base, base, log_dir)
    config["data"] = {"kind": "instructions", "paths": expand_paths(cfg.data), "format": cfg.format,
                      "val_fraction": cfg.val_fraction, "seed": train_cfg.seed, "packing": cfg.packing}
    config["finetune"] = {**dataclasses.asdict(cfg), "base_model_dir": str(base)}
    # Read and tokenize once here, so bad data fails with its message before any worker starts.
    for split in ("train", "val"):
        data = InstructionData(config["data"]["paths"], split, train_cfg.seq_len, base, cfg.format,
                               cfg.val_fraction, train_cfg.seed, cfg.packing)
        config["data"][f"n_{split}"] = len(data.examples)
        config["data"][f"dropped_{split}"] = data.dropped
    return config, model_cfg.to_dict()


def run_finetune(cfg: FinetuneConfig, train_cfg: TrainConfig, out_dir, name: str = "finetune", progress=print):
    """Fine-tune on Ray Train (Ray must be initialised); returns the best checkpoint (TrainResult)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from cluster.resources import train_scaling_config
    from pipelines.training.loop import train_loop_per_worker
    from pipelines.training.trainer import best_of

    if not cfg.data:
        raise ValueError("finetune.data: no instruction files given")
    from pipelines.config import ConfigError

    base = resolve_base(cfg.init_from)
    out_dir = Path(out_dir).resolve()
    try:  # bad settings or data: one message (the CLI's exit 2), before any worker starts
        train_cfg = cfg.train_config(train_cfg)
        config, _ = finetune_loop_config(cfg, train_cfg, base, out_dir / name / "logs")
    except ConfigError:
        raise
    except ValueError as exc:
        fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
        named = str(exc).split(":")[0].split(".")[0] in fields     # "train.lr: ...", "method: ..."
        raise ConfigError(f"finetune.{exc}" if named else f"finetune: {exc}") from None
    data = config["data"]
    dropped = data["dropped_train"] + data["dropped_val"]
    progress(f"finetune: {cfg.method} from {base}; {data['n_train']} train / {data['n_val']} val examples"
             + (f" ({dropped} dropped: no response within train.seq_len={train_cfg.seq_len})" if dropped else "")
             + f"; {train_cfg.max_steps} steps on {train_cfg.num_workers} Ray Train workers")
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=train_scaling_config(train_cfg),
        run_config=RunConfig(name=name, storage_path=str(out_dir), logging_config=LoggingConfig(log_level="WARNING"),
                             failure_config=FailureConfig(max_failures=train_cfg.max_failures),
                             # Kept by val_loss, so the best checkpoint survives later worse ones.
                             checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.keep_checkpoints,
                                                                checkpoint_score_attribute="val_loss",
                                                                checkpoint_score_order="min")))
    return best_of(trainer.fit(), out_dir, name)
