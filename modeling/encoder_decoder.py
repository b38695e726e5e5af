"""The original transformer (Vaswani et al. 2017): an encoder and a decoder built from the same
components as the decoder-only model (modeling/layers.py), with a KV cache for decoding.

    model = EncoderDecoder(ModelConfig(arch="encoder_decoder", vocab_size=1000))
    logits = model(src, tgt_in)                   # src (B, S), tgt_in (B, T) -> (B, T, V)
    memory = model.encode(src, src_mask)          # (B, S, C), once per source
    logits = model.decode(tgt_in, memory, src_mask, cache)

Encoder layers: self-attention over the whole source (padding masked) and feed-forward. Decoder
layers: causal self-attention, cross-attention to the encoder output, feed-forward. Source and
target share one embedding (and the LM head when tie_embeddings), as in the paper.
"""
from __future__ import annotations

import torch
from torch import nn

from modeling.config import ModelConfig
from modeling.layers import Block, KVCache, Positions, make_norm, padding_positions
from modeling.transformer import check_length, embed_causal, init_weights


class EncoderDecoder(nn.Module):
    """N encoder blocks, N decoder blocks with cross-attention, shared embedding, LM head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "encoder_decoder":
            raise ValueError(f"arch: EncoderDecoder needs 'encoder_decoder', got {cfg.arch!r}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = Positions(cfg)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_layers))
        self.layers = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.n_layers))   # the decoder
        pre = cfg.norm_position == "pre"
        self.enc_norm = make_norm(cfg) if pre else nn.Identity()
        self.norm = make_norm(cfg) if pre else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        init_weights(self, cfg.encoder_layers + cfg.n_layers)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (B, S) long, src_mask (B, S) bool (False at padding) -> memory (B, S, C)."""
        B, S = src.shape
        check_length(self.cfg, S)
        if src_mask is None:
            src_mask = torch.ones_like(src, dtype=torch.bool)
        add, cos, sin = self.positions(padding_positions(src_mask, 0))                # per-row positions
        x = self.tok_emb(src) * self.positions.emb_scale                              # (B, S, C)
        x = x if add is None else x + add
        mask = src_mask[:, None, None, :].bool()                                      # (B, 1, 1, S): not causal
        for layer in self.encoder:
            x = layer(x, cos, sin, mask=mask)
        return self.enc_norm(x)                                                       # (B, S, C)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None = None,
               cache: KVCache | None = None, tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tgt (B, T) target-so-far tokens, memory (B, S, C) -> logits (B, T, V)."""
        x, cos, sin, mask = embed_causal(self, tgt, cache, tgt_mask)                   # (B, T, C)
        memory_mask = None if src_mask is None else src_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, mask, memory=memory, memory_mask=memory_mask)
        if cache is not None:
            cache.length += tgt.shape[1]
        return self.lm_head(self.norm(x))                                             # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt (B, T) -> logits (B, T, V) predicting tgt's next tokens."""
        return self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask=tgt_mask)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (shared tensors counted once); optionally without the token embedding."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_emb.weight.numel() if exclude_embeddings else n


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model class for cfg.arch: Transformer (decoder_only) or EncoderDecoder."""
    from modeling.transformer import Transformer

    return EncoderDecoder(cfg) if cfg.arch == "encoder_decoder" else Transformer(cfg)
