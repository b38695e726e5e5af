"""Sampling from either architecture with a KV cache: temperature, top-k, top-p, repetition
penalty, stop strings, eos, seed, batched prompts.

    ids = generate(model, tokenizer.encode("def "), max_new_tokens=50, temperature=0.8, seed=0)
    rows = generate_batch(model, [p1, p2], 50, pad_id=tok.pad_id, temperature=0)   # left-padded
    texts = generate_text(model, tok, ["def ", "The os"], 50, stop=["\\n\\n"])
    rows = generate_seq2seq(model, [src1, src2], 20, bos_id=tok.bos_id, eos_id=tok.eos_id)

temperature=0 means greedy decoding. A prompt that does not leave room for a new token inside
max_seq_len is left-truncated to its last max_seq_len - 1 tokens (the most recent context).
Batched prompts are left-padded and masked: each row gets what it would get alone.
"""
from __future__ import annotations

from typing import Callable

import torch

from modeling.layers import KVCache


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


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): for tokens already seen (seen (B, V) bool), divide a
    positive logit by `penalty` and multiply a negative one, making repeats less likely."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)                                    # (B, V)


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, T) tokens and (B, T) real-token mask (None when no row needs padding)."""
    T = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, T - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
    if all(len(p) == T for p in prompts):
        return tokens, None
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    return tokens, torch.arange(T, device=device)[None, :] >= (T - lengths)[:, None]


def _decode_loop(step: Callable, first_logits: torch.Tensor, seen: torch.Tensor, max_new_tokens: int,
                 temperature: float, top_k, top_p, seed, eos_id, repetition_penalty: float,
                 stopped: Callable[[list[int]], bool] | None) -> list[list[int]]:
    """Shared sampling loop: first_logits (B, V); step(tokens (B, 1)) -> next logits (B, V)."""
    generator = torch.Generator(device=first_logits.device).manual_seed(seed) if seed is not None else None
    B = first_logits.shape[0]
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    logits = first_logits
    for n in range(max_new_tokens):
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
        token = sample_next(logits, temperature, top_k, top_p, generator)            # (B,)
        seen[torch.arange(B), token] = True
        for i in range(B):
            if not done[i]:
                out[i].append(int(token[i]))
                done[i] = (eos_id is not None and out[i][-1] == eos_id) or (stopped is not None and stopped(out[i]))
        if all(done) or n + 1 == max_new_tokens:
            break
        logits = step(token.view(B, 1))
    return out


def _seen(prompts: list[list[int]], vocab: int, device) -> torch.Tensor:
    seen = torch.zeros(len(prompts), vocab, dtype=torch.bool, device=device)       # (B, V)
    for i, p in enumerate(prompts):
        seen[i, p] = True
    return seen


@torch.no_grad()
def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                   eos_id: int | None = None, pad_id: int = 0, repetition_penalty: float = 1.0,
                   stopped: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """Continue several prompts of a decoder-only model at once; returns each row's new tokens.
    A row ends at eos_id or when stopped(new_tokens) is true; all end at max_new_tokens or when
    the longest prompt reaches max_seq_len. Empty prompts get []."""
    model.eval()
    keep = model.cfg.max_seq_len - 1
    # p[len(p) - keep:], not p[-keep:], which keeps everything when keep == 0.
    truncated = [list(p[len(p) - keep:] if len(p) > keep else p) for p in prompts]
    live = [i for i, p in enumerate(truncated) if p]
    rows = [truncated[i] for i in live]
    results: list[list[int]] = [[] for _ in prompts]
    room = model.cfg.max_seq_len - max((len(r) for r in rows), default=0)
    max_new_tokens = max(0, min(max_new_tokens, room))
    if not rows or max_new_tokens == 0:
        return results
    device = next(model.parameters()).device
    tokens, mask = _left_pad(rows, pad_id, device)                                 # (B, T)
    cache = KVCache(model.cfg.n_layers)
    first = model(tokens, cache, mask)[:, -1]                                      # (B, V)
    step = lambda tok: model(tok, cache)[:, -1]                                     # noqa: E731
    outs = _decode_loop(step, first, _seen(rows, model.cfg.vocab_size, device), max_new_tokens, temperature,
                        top_k, top_p, seed, eos_id, repetition_penalty, stopped)
    for i, out in zip(live, outs):
        results[i] = out
    return results


def generate(model, prompt: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             eos_id: int | None = None, repetition_penalty: float = 1.0,
             stopped: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Continue one prompt; returns only the new token ids (stops early at eos_id).

    At most max_seq_len - len(prompt) tokens are generated. A prompt of max_seq_len tokens or more
    is left-truncated to its last max_seq_len - 1 tokens, keeping the most recent context, so at
    least one new token is produced; an empty prompt (or max_new_tokens <= 0) returns [].
    """
    return generate_batch(model, [prompt], max_new_tokens, temperature, top_k, top_p, seed, eos_id,
                          repetition_penalty=repetition_penalty, stopped=stopped)[0]


def stop_at(decode: Callable[[list[int]], str], stop: list[str]) -> Callable[[list[int]], bool]:
    """A `stopped` test: true once the decoded new tokens contain any of the stop strings."""
    return lambda ids: any(s in decode(ids) for s in stop)


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text before the first stop string (the whole text if none occurs)."""
    cuts = [text.index(s) for s in stop if s in text]
    return text[:min(cuts)] if cuts else text


def generate_text(model, tokenizer, prompts: list[str], max_new_tokens: int, stop: list[str] | None = None,
                  **sampling) -> list[str]:
    """Decoder-only: continue text prompts in one batch, each cut before its first stop string."""
    stop = [s for s in (stop or []) if s]
    stopped = stop_at(tokenizer.decode, stop) if stop else None
    rows = generate_batch(model, [tokenizer.encode(p) for p in prompts], max_new_tokens, pad_id=tokenizer.pad_id,
                          eos_id=tokenizer.eos_id, stopped=stopped, **sampling)
    return [cut_at_stop(tokenizer.decode(r), stop) for r in rows]


@torch.no_grad()
def generate_seq2seq(model, sources: list[list[int]], max_new_tokens: int, bos_id: int, temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                     eos_id: int | None = None, pad_id: int = 0, repetition_penalty: float = 1.0,
                     stopped: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """Encoder-decoder: encode each source once, then decode from bos with a KV cache (self-attention
    keys grow, cross-attention keys are projected once). Returns each row's target tokens."""
    model.eval()
    max_new_tokens = max(0, min(max_new_tokens, model.cfg.max_seq_len - 1))
    if not sources or max_new_tokens == 0:
        return [[] for _ in sources]
    device = next(model.parameters()).device
    src, src_mask = _left_pad(sources, pad_id, device)                             # (B, S)
    memory = model.encode(src, src_mask)                                           # (B, S, C)
    cache = KVCache(model.cfg.n_layers)
    bos = torch.full((len(sources), 1), bos_id, dtype=torch.long, device=device)   # (B, 1)
    step = lambda tok: model.decode(tok, memory, src_mask, cache)[:, -1]            # noqa: E731
    seen = torch.zeros(len(sources), model.cfg.vocab_size, dtype=torch.bool, device=device)
    return _decode_loop(step, step(bos), seen, max_new_tokens, temperature, top_k, top_p, seed, eos_id,
                        repetition_penalty, stopped)
