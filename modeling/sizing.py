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

from modeling.config import ModelConfig


def layer_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameters of one decoder block by part: attention, feed-forward, norms."""
    C, F = cfg.d_model, cfg.ffn_dim
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    return {"attention": C * q_dim + 2 * C * kv_dim + q_dim * C, "ffn": 3 * C * F, "norms": 2 * C}


def count_params(cfg: ModelConfig) -> int:
    """Exact parameter count (tied weights once), equal to `Transformer(cfg).num_params()`."""
    embedding = cfg.vocab_size * cfg.d_model
    head = 0 if cfg.tie_embeddings else embedding
    return embedding + cfg.n_layers * sum(layer_params(cfg).values()) + cfg.d_model + head


def matmul_params(cfg: ModelConfig) -> int:
    """Weights used in matrix multiplies: the blocks' projections and the LM head."""
    per_layer = layer_params(cfg)
    return cfg.n_layers * (per_layer["attention"] + per_layer["ffn"]) + cfg.vocab_size * cfg.d_model


def attention_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token of the attention scores and value mixing: 12 L T d_attn."""
    return 12 * cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim


def train_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Forward + backward FLOPs per trained token at sequence length seq_len (default max_seq_len)."""
    seq_len = cfg.max_seq_len if seq_len is None else seq_len
    return 6 * matmul_params(cfg) + attention_flops_per_token(cfg, seq_len)
