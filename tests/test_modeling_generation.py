"""Tests for generation features beyond greedy/top-k/top-p (tests/test_modeling.py has those):
batched prompts with left padding, repetition penalty, stop strings, and encoder-decoder decoding
with a KV cache. Tiny random models, one thread.
"""
from __future__ import annotations

import pytest
import torch

from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.generation import (apply_repetition_penalty, cut_at_stop, generate, generate_batch,
                                 generate_seq2seq, generate_text)
from modeling.tokenizer import Tokenizer

BASE = dict(vocab_size=48, d_model=32, n_layers=2, n_heads=4, max_seq_len=40)
POSITIONS = pytest.mark.parametrize("extra", [{}, dict(positions="learned", norm="layernorm", bias=True),
                                              dict(positions="sinusoidal", n_kv_heads=2)],
                                    ids=["rope", "learned", "sinusoidal-gqa"])


# Other engineers share these 2 cores: train and infer on one thread (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(seed: int = 0, **kwargs):
    """A random model whose greedy output depends on its context: untied (a tied random model
    mostly repeats its last token) and with matrices scaled up from the init."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**{"tie_embeddings": False, **kwargs})).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model


def greedy_recompute(model, prompt: list[int], n: int) -> list[int]:
    seq, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            seq.append(out[-1])
    return out


def prompts(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 11, 7, 1)]


@POSITIONS
def test_batched_greedy_equals_each_prompt_alone(extra, monkeypatch):
    model = make(**BASE, **extra)
    batch = prompts(BASE["vocab_size"])
    got = generate_batch(model, batch, 12, temperature=0, pad_id=0)
    for prompt, row in zip(batch, got):
        assert row == greedy_recompute(model, prompt, 12)
        assert row == generate(model, prompt, 12, temperature=0)
    assert generate_batch(model, [batch[0], [], batch[1]], 4, temperature=0)[1] == []
    # The padding mask is what makes this work: without it some rows change.
    import modeling.generation as gen

    left_pad = gen._left_pad
    monkeypatch.setattr(gen, "_left_pad", lambda p, pad, device: (left_pad(p, pad, device)[0], None))
    assert generate_batch(model, batch, 12, temperature=0, pad_id=0) != got


def test_batched_sampling_is_seeded_and_batch_of_one_equals_generate():
    model = make(**BASE)
    batch = prompts(BASE["vocab_size"])
    a = generate_batch(model, batch, 10, temperature=1.0, top_k=20, seed=3)
    assert a == generate_batch(model, batch, 10, temperature=1.0, top_k=20, seed=3)
    assert generate_batch(model, batch[:1], 10, temperature=1.0, seed=4) == \
        [generate(model, batch[0], 10, temperature=1.0, seed=4)]


def test_batched_rows_stop_independently_at_eos():
    model = make(**BASE)
    batch = prompts(BASE["vocab_size"])
    free = generate_batch(model, batch, 12, temperature=0)
    eos = free[1][3]
    got = generate_batch(model, batch, 12, temperature=0, eos_id=eos)
    for full, row in zip(free, got):
        stop = full.index(eos) + 1 if eos in full else len(full)
        assert row == full[:stop]


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)
    model = make(**BASE)
    prompt = prompts(BASE["vocab_size"])[1]
    plain = generate(model, prompt, 25, temperature=0)
    assert generate(model, prompt, 25, temperature=0, repetition_penalty=1.0) == plain
    penalised = generate(model, prompt, 25, temperature=0, repetition_penalty=1e6)
    # A huge penalty makes every seen token lose to any unseen token with a positive logit.
    assert len(set(penalised)) > len(set(plain))
    assert not set(penalised[:5]) & set(prompt)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["the cat sat on the mat. the dog ran.\n" * 30, "def f(x):\n    return x\n" * 30],
                           vocab_size=300)


def test_stop_strings(tok):
    model = make(**{**BASE, "vocab_size": tok.vocab_size})
    texts = ["the cat", "def f"]
    free = generate_text(model, tok, texts, 20, temperature=0)
    # Choose a stop string that occurs in the middle of the first continuation.
    stop = free[0][len(free[0]) // 2: len(free[0]) // 2 + 2]
    assert stop and stop in free[0]
    got = generate_text(model, tok, texts, 20, stop=[stop], temperature=0)
    assert got[0] == free[0][: free[0].index(stop)]
    assert got[1] == cut_at_stop(free[1], [stop])
    ids = generate_batch(model, [tok.encode(t) for t in texts], 20, temperature=0, pad_id=tok.pad_id,
                         eos_id=tok.eos_id, stopped=lambda new: stop in tok.decode(new))
    assert stop in tok.decode(ids[0]) and stop not in tok.decode(ids[0][:-1])   # stops at once
    assert cut_at_stop("abXcdYe", ["Y", "X"]) == "ab" and cut_at_stop("abc", ["z"]) == "abc"


def test_seq2seq_greedy_with_cache_equals_recompute():
    model = make(arch="encoder_decoder", vocab_size=20, d_model=32, n_layers=2, n_heads=4, max_seq_len=24)
    g = torch.Generator().manual_seed(1)
    sources = [torch.randint(3, 20, (n,), generator=g).tolist() for n in (6, 9, 4)]
    got = generate_seq2seq(model, sources, 10, bos_id=1, temperature=0)
    for src, row in zip(sources, got):
        tgt = [1]
        with torch.no_grad():
            for _ in range(10):
                tgt.append(int(model(torch.tensor([src]), torch.tensor([tgt]))[0, -1].argmax()))
        assert row == tgt[1:]
    assert generate_seq2seq(model, sources, 10, bos_id=1, temperature=1.0, seed=2) == \
        generate_seq2seq(model, sources, 10, bos_id=1, temperature=1.0, seed=2)
