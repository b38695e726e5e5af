"""Model configuration: one small typed dataclass, validated on construction.

    cfg = ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4)      # Llama-style decoder
    cfg = ModelConfig(arch="encoder_decoder")     # components of the 2017 transformer, demo size
    cfg = ModelConfig.transformer_2017()          # ... at the paper's base size (512, 8 heads, 2048)

Components left at None take their architecture's default: decoder_only is Llama-style (RoPE,
SwiGLU, RMSNorm, pre-norm, no biases); encoder_decoder is Vaswani et al. 2017 (sinusoidal
positions, ReLU, LayerNorm, post-norm, biases).

Errors start with the field name (`d_model: ...`) so the run-config loader can prefix the section.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

ARCH_DEFAULTS = {
    "decoder_only": {"positions": "rope", "ffn": "swiglu", "norm": "rmsnorm", "norm_position": "pre", "bias": False},
    "encoder_decoder": {"positions": "sinusoidal", "ffn": "relu", "norm": "layernorm", "norm_position": "post",
                        "bias": True},
}


@dataclass
class ModelConfig:
    """A transformer: Llama-style decoder-only by default, or the 2017 encoder-decoder."""

    arch: Literal["decoder_only", "encoder_decoder"] = "decoder_only"
    vocab_size: int = 4096          # set from the trained tokenizer when a run builds the model
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int | None = None   # None = n_heads (plain multi-head); fewer = grouped-query attention
    ffn_hidden: int | None = None   # None = SwiGLU: 8/3 * d_model up to a multiple of 64 (Llama); else 4 * d_model
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = True     # small models spend most parameters on embeddings; tying halves that
    # Components; None = the arch's default (ARCH_DEFAULTS), filled in on construction.
    positions: Literal["rope", "learned", "sinusoidal"] | None = None
    ffn: Literal["swiglu", "gelu", "relu"] | None = None
    norm: Literal["rmsnorm", "layernorm"] | None = None
    norm_position: Literal["pre", "post"] | None = None
    bias: bool | None = None        # biases in every linear layer and LayerNorm
    n_encoder_layers: int | None = None   # encoder_decoder only; None = n_layers

    @classmethod
    def transformer_2017(cls, **overrides) -> "ModelConfig":
        """The base model of "Attention is all you need": 6+6 layers, d_model 512, 8 heads, ffn 2048."""
        base = dict(arch="encoder_decoder", d_model=512, n_layers=6, n_heads=8, ffn_hidden=2048,
                    dropout=0.1, max_seq_len=512, vocab_size=37000)
        return cls(**{**base, **overrides})

    def __post_init__(self) -> None:
        if self.arch not in ARCH_DEFAULTS:
            raise ValueError(f"arch: {self.arch!r} is not one of {list(ARCH_DEFAULTS)}")
        for name, value in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        choices = {"positions": ("rope", "learned", "sinusoidal"), "ffn": ("swiglu", "gelu", "relu"),
                   "norm": ("rmsnorm", "layernorm"), "norm_position": ("pre", "post")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"d_model: {self.d_model} must be even for sinusoidal positions")
        if self.n_encoder_layers is not None and self.n_encoder_layers <= 0:
            raise ValueError(f"n_encoder_layers: must be positive or null, got {self.n_encoder_layers}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2 and self.positions == "rope":
            raise ValueError(f"d_model: head size d_model/n_heads = {self.head_dim} must be even for RoPE")
        kv = self.kv_heads
        if kv <= 0 or self.n_heads % kv:
            raise ValueError(f"n_kv_heads: {kv} must be positive and divide n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.ffn_hidden is not None and self.ffn_hidden <= 0:
            raise ValueError(f"ffn_hidden: must be positive, got {self.ffn_hidden}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        if self.ffn != "swiglu":
            return 4 * self.d_model
        return 64 * ((8 * self.d_model // 3 + 63) // 64)

    @property
    def encoder_layers(self) -> int:
        return self.n_encoder_layers or self.n_layers

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**data)
