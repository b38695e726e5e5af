"""The decoder-only transformer in plain PyTorch: Llama-style by default (RoPE, RMSNorm, SwiGLU,
GQA, no biases), other components by config (modeling/layers.py); KV cache and padding masks.

The model knows nothing about distribution: data/tensor/pipeline parallelism is applied from the
outside by `pipelines.training.parallelize`. Shapes: B batch, T time, C d_model, H heads, D head_dim.

    model = Transformer(ModelConfig(vocab_size=512))
    logits = model(tokens)                       # tokens (B, T) long -> logits (B, T, V)
    logits = model(tokens, padding_mask=mask)    # mask (B, T) bool, False at (left) padding
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modeling.config import ModelConfig
from modeling.layers import (Attention, Block, KVCache, Positions, RMSNorm, SwiGLU, apply_rope,  # noqa: F401
                             make_norm, padding_positions, rope_tables, self_attention_mask)


def init_weights(model: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: matrices N(0, 0.02), output projections (attention wo, ffn w2) scaled
    by 1/sqrt(2 * n_layers) so the residual stream's variance does not grow with depth; biases 0,
    norm gains 1 (their constructors' values). Next to fixed sinusoids the token embedding is
    N(0, 1/d_model), so that scaled by sqrt(d_model) it matches the sinusoids' scale (2017 paper)."""
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            nn.init.zeros_(p)
        if p.dim() < 2:
            continue
        std = 0.02
        if name.endswith(("attn.wo.weight", "ffn.w2.weight")):
            std /= math.sqrt(2 * n_layers)
        nn.init.normal_(p, mean=0.0, std=std)
    if model.cfg.positions == "sinusoidal":
        nn.init.normal_(model.tok_emb.weight, mean=0.0, std=model.cfg.d_model ** -0.5)


def check_length(cfg: ModelConfig, n: int) -> None:
    if n > cfg.max_seq_len:
        raise ValueError(f"sequence of {n} tokens exceeds max_seq_len {cfg.max_seq_len}")


class Transformer(nn.Module):
    """Token embedding, N blocks, final norm (pre-norm only), LM head (tied to the embedding by default)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "decoder_only":
            raise ValueError(f"arch: Transformer is decoder_only; use EncoderDecoder for {cfg.arch!r}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = Positions(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, self.cfg.n_layers)

    @property
    def rope_cos(self) -> torch.Tensor:
        return self.positions.rope_cos                         # (max_seq_len, D/2)

    @property
    def rope_sin(self) -> torch.Tensor:
        return self.positions.rope_sin

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None,
                padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) long -> logits (B, T, V). With a cache, positions continue after it.
        padding_mask (B, T) bool is False at padding: no token attends to padding, and positions
        count real tokens only, so a left-padded row computes what it would unpadded.
        attn_mask (B, 1, T, T) bool, True where attention is allowed, replaces the causal mask
        (e.g. block-diagonal causal so packed documents do not see each other)."""
        x, cos, sin, mask = embed_causal(self, tokens, cache, padding_mask)          # x (B, T, C)
        if attn_mask is not None:
            mask = attn_mask if mask is None else mask & attn_mask
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, mask)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.lm_head(self.norm(x))                                            # (B, T, V)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (shared tensors counted once); optionally without the token embedding."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_emb.weight.numel() if exclude_embeddings else n


def embed_causal(model: nn.Module, tokens: torch.Tensor, cache: KVCache | None, padding_mask: torch.Tensor | None):
    """Embeddings, RoPE angles and causal self-attention mask for the new tokens of a decoder
    (`model` has cfg, tok_emb, positions). Without padding the mask is None (the fast causal path)."""
    B, T = tokens.shape
    start = cache.length if cache is not None else 0
    check_length(model.cfg, start + T)
    mask, positions = None, torch.arange(start, start + T, device=tokens.device)       # (T,)
    if padding_mask is not None or (cache is not None and cache.mask is not None):
        key_valid = _key_valid(tokens, cache, padding_mask)                            # (B, start+T)
        positions = padding_positions(key_valid, start)                                # (B, T)
        mask = self_attention_mask(key_valid, T)                                       # (B, 1, T, start+T)
    add, cos, sin = model.positions(positions)
    x = model.tok_emb(tokens) * model.positions.emb_scale                              # (B, T, C)
    return (x if add is None else x + add), cos, sin, mask


def _key_valid(tokens, cache, padding_mask) -> torch.Tensor:
    """Real-token flags (B, S) of every key, cached ones first; remembered in the cache."""
    new = padding_mask.bool() if padding_mask is not None else torch.ones_like(tokens, dtype=torch.bool)
    if cache is not None:
        past = cache.mask
        if past is None:
            past = torch.ones(tokens.shape[0], cache.length, dtype=torch.bool, device=tokens.device)
        new = cache.mask = torch.cat([past, new], dim=1)
    return new


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits (B, T, V), targets (B, T); -100 targets are ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
