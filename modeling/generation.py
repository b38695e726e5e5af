"""Sampling text from a decoder-only model with a KV cache: temperature, top-k, top-p, seed.

    ids = generate(model, tokenizer.encode("def "), max_new_tokens=50, temperature=0.8, seed=0)

temperature=0 means greedy decoding. A prompt that does not leave room for a new token inside
max_seq_len is left-truncated to its last max_seq_len - 1 tokens (the most recent context).
"""
from __future__ import annotations

import torch

from modeling.transformer import KVCache, Transformer


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """Pick the next token from logits (B, V) -> (B,)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already cover top_p of the mass.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompt: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             eos_id: int | None = None) -> list[int]:
    """Continue one prompt; returns only the new token ids (stops early at eos_id).

    At most max_seq_len - len(prompt) tokens are generated. A prompt of max_seq_len tokens or more
    is left-truncated to its last max_seq_len - 1 tokens, keeping the most recent context, so at
    least one new token is produced; an empty prompt (or max_new_tokens <= 0) returns [].
    """
    model.eval()
    keep = model.cfg.max_seq_len - 1
    if len(prompt) > keep:
        prompt = prompt[len(prompt) - keep:]   # not prompt[-keep:], which keeps everything when keep == 0
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    room = model.cfg.max_seq_len - len(prompt)
    max_new_tokens = max(0, min(max_new_tokens, room))
    if not prompt or max_new_tokens == 0:
        return []
    cache = KVCache(model.cfg.n_layers)
    logits = model(torch.tensor([prompt], device=device), cache)[:, -1]       # (1, V)
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, top_p, generator)      # (1,)
        out.append(int(token))
        if (eos_id is not None and out[-1] == eos_id) or len(out) == max_new_tokens:
            break
        logits = model(token.view(1, 1), cache)[:, -1]
    return out
