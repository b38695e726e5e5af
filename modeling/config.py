"""Model configuration: one small typed dataclass, validated on construction.

    cfg = ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4)

Errors start with the field name (`d_model: ...`) so the run-config loader can prefix the section.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    """A Llama-style decoder-only transformer (RoPE, RMSNorm, SwiGLU, optional GQA, no biases)."""

    arch: Literal["decoder_only"] = "decoder_only"
    vocab_size: int = 4096          # set from the trained tokenizer when a run builds the model
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int | None = None   # None = n_heads (plain multi-head); fewer = grouped-query attention
    ffn_hidden: int | None = None   # None = the Llama rule: 8/3 * d_model rounded up to a multiple of 64
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = True     # small models spend most parameters on embeddings; tying halves that

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2:
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
        return 64 * ((8 * self.d_model // 3 + 63) // 64)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**data)
