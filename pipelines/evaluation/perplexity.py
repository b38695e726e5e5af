"""Held-out perplexity of a model on a flat token stream (the tokenize stage's val shards, in order).

    stats = perplexity(model, split_tokens("tokens", "val", 100_001), seq_len=256,
                       max_tokens=100_000, batch_size=16)
    stats["loss"], stats["perplexity"]     # nats/token and exp(loss)

The stream is cut into non-overlapping windows of `seq_len` inputs; each window predicts its
next `seq_len` tokens, so every scored token is predicted exactly once. The loss is the
token-weighted mean over all windows (a shorter last window counts by its tokens). No sampling,
no dropout: the same model and tokens always give the same numbers.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokens: np.ndarray, seq_len: int, max_tokens: int,
               batch_size: int) -> dict:
    """Mean next-token loss (nats) and perplexity over at most `max_tokens` predicted tokens."""
    if seq_len <= 0 or max_tokens <= 0 or batch_size <= 0:
        raise ValueError("seq_len, max_tokens and batch_size must be positive")
    n_pred = min(len(tokens) - 1, max_tokens)
    if n_pred <= 0:
        raise ValueError(f"need at least 2 tokens to score, got {len(tokens)}")
    stream = torch.from_numpy(np.asarray(tokens[:n_pred + 1]).astype(np.int64))  # (N+1,)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll, n_windows = 0.0, 0
    for inputs, targets in _batches(stream, seq_len, batch_size):
        logits = model(inputs.to(device))                                   # (B, T, V)
        # Sum in float64 on the host so the mean does not depend on batch order or size.
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().to(device),
                              reduction="none")                             # (B*T,)
        total_nll += nll.double().sum().item()
        n_windows += inputs.size(0)
    model.train(was_training)
    loss = total_nll / n_pred
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": n_pred, "windows": n_windows}


def _batches(stream: torch.Tensor, seq_len: int, batch_size: int):
    """Yield (inputs, targets), each (B, T): full windows stacked, then the short tail alone."""
    n_pred = stream.numel() - 1
    n_full = n_pred // seq_len
    for start in range(0, n_full, batch_size):
        rows = range(start, min(start + batch_size, n_full))
        inputs = torch.stack([stream[r * seq_len:(r + 1) * seq_len] for r in rows])        # (B, T)
        targets = torch.stack([stream[r * seq_len + 1:(r + 1) * seq_len + 1] for r in rows])
        yield inputs, targets
    tail = n_full * seq_len
    if tail < n_pred:
        yield stream[tail:n_pred].unsqueeze(0), stream[tail + 1:n_pred + 1].unsqueeze(0)  # (1, t)
