"""LoRA adapters (Hu et al. 2021) on the transformer's projections, and merging them back.

    cfg = LoraConfig(rank=8, alpha=16, targets=["wq", "wv"])
    apply_lora(model, cfg)          # in place: W x + (alpha/r) B A x on every matching nn.Linear
    ...train...                     # only the A and B matrices require grad
    merge_lora(model)               # in place: plain nn.Linear with W + (alpha/r) B A, adapters gone

Hugging Face `peft` injects the adapters (`inject_adapter_in_model`: A Kaiming-uniform, B zeros, so
the adapted model starts equal to the base). `merge_lora_state_dict` folds adapters into a state
dict without the modules, which is how a sharded (FSDP) training run writes plain weights.
Targets are module-name suffixes: attention wq/wk/wv/wo and feed-forward w1/w2/w3 (modeling/layers.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch import nn

PROJECTIONS = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
ADAPTER = "default"  # peft's adapter name; one adapter per model here


@dataclass
class LoraConfig:
    rank: int = 8                   # r: rank of the update B A
    alpha: float = 16.0             # the update is scaled by alpha / rank
    dropout: float = 0.0            # dropout on the adapter's input (training only)
    targets: list[str] = field(default_factory=lambda: list(PROJECTIONS))

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ValueError(f"rank: must be a positive integer, got {self.rank}")
        if not self.alpha > 0:
            raise ValueError(f"alpha: must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        bad = [t for t in self.targets if t not in PROJECTIONS]
        if not self.targets or bad:
            raise ValueError(f"targets: must be a non-empty list from {list(PROJECTIONS)}, got {self.targets}")


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Inject adapters into every nn.Linear named `...<target>` and freeze everything else."""
    import peft

    # Match the last name component exactly, so "w1" does not also match "w12" or "lm_head".
    pattern = r".*\.(" + "|".join(cfg.targets) + r")$"
    peft_cfg = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                               target_modules=pattern, bias="none")
    peft.inject_adapter_in_model(peft_cfg, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad = ".lora_" in name
    return model


def lora_scales(model: nn.Module) -> dict[str, float]:
    """{module name: alpha / rank} for every adapted layer (empty for a plain model)."""
    if "peft" not in sys.modules:  # no adapters without peft; spares pretraining checkpoints its import
        return {}
    from peft.tuners.lora import LoraLayer

    return {name: float(m.scaling[ADAPTER]) for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def merge_lora_state_dict(state: dict[str, torch.Tensor], scales: dict[str, float]) -> dict[str, torch.Tensor]:
    """A plain model's state dict from an adapted one: W <- W + scale * B @ A per adapted layer.

    `state` holds full (unsharded) tensors, e.g. get_model_state_dict(full_state_dict=True);
    `scales` comes from lora_scales() of the same model. Without adapters it is returned as is.
    """
    out = dict(state)
    for name, scale in scales.items():
        base = out.pop(f"{name}.base_layer.weight")                             # (out, in)
        a = out.pop(f"{name}.lora_A.{ADAPTER}.weight")                           # (r, in)
        b = out.pop(f"{name}.lora_B.{ADAPTER}.weight")                           # (out, r)
        # Multiply in fp32 so a bf16 base does not lose the (small) update to rounding.
        out[f"{name}.weight"] = (base.float() + scale * (b.float() @ a.float())).to(base.dtype)
        if f"{name}.base_layer.bias" in out:
            out[f"{name}.bias"] = out.pop(f"{name}.base_layer.bias")
    return out


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain nn.Linear back, in place.

    Every parameter of the result requires grad again (a plain model, as pretraining leaves it).
    """
    from peft.tuners.lora import LoraLayer

    adapted = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in adapted:
        layer.merge(safe_merge=True, adapter_names=[ADAPTER])   # safe_merge: fails on NaN/inf
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    for p in model.parameters():
        p.requires_grad = True
    return model


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied tensors counted once."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    return sum(p.numel() for p in seen.values() if p.requires_grad), total
