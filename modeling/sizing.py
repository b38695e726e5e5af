"""Parameter count and training FLOPs of a model config, by formula (no model is built).

    count_params(cfg)                  # == Transformer(cfg).num_params(), tested
    train_flops_per_token(cfg, 2048)   # 6 N_matmul + 12 L T d_attn (PaLM appendix B, Chinchilla app. F)

Training FLOPs per token: each weight of a matrix multiply costs 2 FLOPs per token forward and 4
backward (6 in all); the input embedding is a lookup, so untied embeddings do not count, a tied
one counts once, as the LM head. Attention adds, per layer and token, 2 T d_attn for the scores
q k^T and 2 T d_attn for the weighted sum of values forward, times 3 with the backward pass:
12 L T d_attn, with T the sequence length and d_attn = n_heads * head_dim (the causal mask's
saving is not counted, as in PaLM's MFU). Norms, softmax and activations are ignored (< 1%).
"""
from __future__ import annotations

import dataclasses

from modeling.config import ModelConfig


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def attention_params(cfg: ModelConfig) -> int:
    C, q_dim, kv_dim = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    return _linear(C, q_dim, cfg.bias) + 2 * _linear(C, kv_dim, cfg.bias) + _linear(q_dim, C, cfg.bias)


def ffn_params(cfg: ModelConfig) -> int:
    C, F = cfg.d_model, cfg.ffn_dim
    gates = 2 if cfg.ffn == "swiglu" else 1      # SwiGLU has w1 and w3 in, the MLP only w1
    return gates * _linear(C, F, cfg.bias) + _linear(F, C, cfg.bias)


def norm_params(cfg: ModelConfig) -> int:
    return cfg.d_model * (2 if cfg.norm == "layernorm" and cfg.bias else 1)


def layer_params(cfg: ModelConfig, cross: bool = False) -> dict[str, int]:
    """Parameters of one block by part: attention (self, and cross in the 2017 decoder), ffn, norms."""
    attention = attention_params(cfg) * (2 if cross else 1)
    return {"attention": attention, "ffn": ffn_params(cfg), "norms": norm_params(cfg) * (3 if cross else 2)}


def count_params(cfg: ModelConfig) -> int:
    """Exact parameter count (tied weights once), equal to the built model's `num_params()`."""
    embedding = cfg.vocab_size * cfg.d_model
    head = 0 if cfg.tie_embeddings else embedding
    positions = cfg.max_seq_len * cfg.d_model if cfg.positions == "learned" else 0
    final_norms = norm_params(cfg) if cfg.norm_position == "pre" else 0
    blocks = cfg.n_layers * sum(layer_params(cfg, cross=cfg.arch == "encoder_decoder").values())
    if cfg.arch == "encoder_decoder":
        blocks += cfg.encoder_layers * sum(layer_params(cfg).values())
        final_norms *= 2                             # encoder and decoder each end in a norm
    return embedding + positions + blocks + final_norms + head


def matmul_params(cfg: ModelConfig) -> int:
    """Weights used in matrix multiplies per token: the blocks' projections and the LM head.
    (For encoder_decoder this counts a source and a target token as one pair.) Biases are adds,
    not multiplies, and are left out."""
    cfg = dataclasses.replace(cfg, bias=False)
    per_layer = layer_params(cfg, cross=cfg.arch == "encoder_decoder")
    total = cfg.n_layers * (per_layer["attention"] + per_layer["ffn"])
    if cfg.arch == "encoder_decoder":
        enc = layer_params(cfg)
        total += cfg.encoder_layers * (enc["attention"] + enc["ffn"])
    return total + cfg.vocab_size * cfg.d_model


def attention_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token of the attention scores and value mixing: 12 L T d_attn."""
    return 12 * cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim


def train_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Forward + backward FLOPs per trained token at sequence length seq_len (default max_seq_len)."""
    seq_len = cfg.max_seq_len if seq_len is None else seq_len
    return 6 * matmul_params(cfg) + attention_flops_per_token(cfg, seq_len)
