"""Tests for modeling/: the transformer, KV cache, generation, checkpoints and config (tokenizer: test_tokenizer.py).

Everything runs on CPU with tiny models and one torch thread; the whole file takes a few seconds.
"""
from __future__ import annotations

import json
import struct

import pytest
import torch

from modeling.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model
from modeling.config import ModelConfig
from modeling.generation import generate, sample_next
from modeling.transformer import KVCache, Transformer, lm_loss

# Small enough to be fast, big enough to exercise every code path (several layers, GQA, RoPE).
MHA = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
GQA = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
MQA = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=1, max_seq_len=32)
CONFIGS = pytest.mark.parametrize("kwargs", [MHA, GQA, MQA], ids=["mha", "gqa", "mqa"])


# Other engineers share these 2 cores: train and infer on one thread (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(seed: int = 0, **kwargs) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**kwargs)).eval()


def random_tokens(shape, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def greedy_without_cache(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """Reference decoder: recompute the full sequence every step and take the argmax."""
    seq, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([seq]))[0, -1].argmax())
            out.append(nxt)
            seq.append(nxt)
    return out


# ----------------------------------------------------------------------------------------------
# Transformer forward/backward
# ----------------------------------------------------------------------------------------------

@CONFIGS
def test_no_future_leakage(kwargs):
    """Changing token t+1 never changes the logits at positions <= t (and does change t+1)."""
    model = make_model(**kwargs)
    T = 12
    tokens = random_tokens((2, T), kwargs["vocab_size"], seed=1)
    with torch.no_grad():
        base = model(tokens)
        for t in range(T - 1):
            changed = tokens.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1 + t) % kwargs["vocab_size"]
            out = model(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
            # The perturbation is visible from position t+1 on: the check above can fail.
            assert not torch.allclose(out[:, t + 1], base[:, t + 1], atol=1e-6)


@CONFIGS
def test_output_shapes_and_too_long_input(kwargs):
    model = make_model(**kwargs)
    for B, T in [(1, 1), (3, 7), (2, kwargs["max_seq_len"])]:
        logits = model(random_tokens((B, T), kwargs["vocab_size"], seed=T))
        assert logits.shape == (B, T, kwargs["vocab_size"])
        assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(random_tokens((1, kwargs["max_seq_len"] + 1), kwargs["vocab_size"], seed=0))


@CONFIGS
def test_attention_matches_naive_reference(kwargs):
    """Grouped-query attention: query head h reads kv head h // (n_heads / n_kv_heads), with RoPE
    applied to q and k, causal softmax(q k^T / sqrt(D)) v, then the output projection."""
    from modeling.transformer import apply_rope

    model = make_model(**kwargs)
    cfg, attn = model.cfg, model.layers[0].attn
    B, T, H, Hkv, D = 2, 9, cfg.n_heads, cfg.kv_heads, cfg.head_dim
    x = torch.randn(B, T, cfg.d_model, generator=torch.Generator().manual_seed(6))
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    with torch.no_grad():
        got = attn(x, cos, sin)
        q = apply_rope(attn.wq(x).view(B, T, H, D).transpose(1, 2), cos, sin)
        k = apply_rope(attn.wk(x).view(B, T, Hkv, D).transpose(1, 2), cos, sin)
        v = attn.wv(x).view(B, T, Hkv, D).transpose(1, 2)
        heads = []
        for h in range(H):
            g = h // (H // Hkv)
            scores = q[:, h] @ k[:, g].transpose(-1, -2) / D ** 0.5                # (B, T, T)
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            heads.append(scores.softmax(-1) @ v[:, g])                               # (B, T, D)
        expected = attn.wo(torch.stack(heads, dim=2).reshape(B, T, H * D))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_rope_rotates_pairs_and_keeps_norm():
    from modeling.transformer import apply_rope, rope_tables

    cos, sin = rope_tables(8, 16, 10000.0)
    x = torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(7))
    y = apply_rope(x, cos, sin)
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])                           # position 0: identity
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))                      # a rotation
    # Relative positions: <rope(q, m), rope(k, n)> depends only on m - n.
    q, k = x[0, 0, 0], x[0, 1, 0]
    def dot(m, n):
        return float(apply_rope(q.expand(16, 8)[None, None], cos, sin)[0, 0, m]
                     @ apply_rope(k.expand(16, 8)[None, None], cos, sin)[0, 0, n])
    assert dot(5, 2) == pytest.approx(dot(12, 9), abs=1e-5)
    assert dot(5, 2) != pytest.approx(dot(5, 3), abs=1e-3)


@pytest.mark.parametrize("tie", [True, False])
def test_gradient_reaches_every_parameter(tie):
    model = make_model(**GQA, tie_embeddings=tie).train()
    tokens = random_tokens((2, 10), GQA["vocab_size"], seed=2)
    loss = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_lm_loss_ignores_minus_100_and_matches_uniform_at_init():
    V = 64
    logits = torch.zeros(1, 4, V)                      # uniform prediction: loss = log V
    targets = torch.tensor([[1, 2, -100, 3]])
    assert lm_loss(logits, targets).item() == pytest.approx(torch.log(torch.tensor(float(V))).item())
    logits[0, 2, 5] = 100.0                            # only the ignored position changes
    assert lm_loss(logits, targets).item() == pytest.approx(torch.log(torch.tensor(float(V))).item())


# ----------------------------------------------------------------------------------------------
# KV cache and generation
# ----------------------------------------------------------------------------------------------

@CONFIGS
def test_kv_cache_logits_equal_full_sequence(kwargs):
    """Prefix, then a multi-token chunk (explicit mask path), then one token at a time."""
    model = make_model(**kwargs)
    T = 20
    tokens = random_tokens((2, T), kwargs["vocab_size"], seed=3)
    with torch.no_grad():
        full = model(tokens)
        cache = KVCache(kwargs["n_layers"])
        pieces = [model(tokens[:, :7], cache), model(tokens[:, 7:11], cache)]
        pieces += [model(tokens[:, i:i + 1], cache) for i in range(11, T)]
    assert cache.length == T
    assert cache.keys[0].shape[1] == ModelConfig(**kwargs).kv_heads   # stores unrepeated kv heads
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(tokens[:, : kwargs["max_seq_len"] - T + 1], cache)


@CONFIGS
def test_greedy_generate_with_cache_equals_recompute(kwargs):
    model = make_model(**kwargs)
    for seed in range(3):
        prompt = random_tokens((5 + seed,), kwargs["vocab_size"], seed=10 + seed).tolist()
        n = 15
        got = generate(model, prompt, max_new_tokens=n, temperature=0)
        assert got == greedy_without_cache(model, prompt, n)


def test_temperature_zero_is_deterministic_and_ignores_seed():
    model = make_model(**GQA)
    prompt = [1, 2, 3]
    outs = [generate(model, prompt, 12, temperature=0, seed=s) for s in (None, 0, 1, 2)]
    assert all(o == outs[0] for o in outs)
    assert len(outs[0]) == 12


def test_sampling_seeds():
    model = make_model(**GQA)
    prompt = [1, 2, 3]
    a = generate(model, prompt, 16, temperature=1.0, seed=7)
    assert a == generate(model, prompt, 16, temperature=1.0, seed=7)
    assert len(a) == 16 and all(0 <= t < GQA["vocab_size"] for t in a)
    assert generate(model, prompt, 16, temperature=1.0, top_k=10, top_p=0.9, seed=3) == \
        generate(model, prompt, 16, temperature=1.0, top_k=10, top_p=0.9, seed=3)
    # A freshly initialised model is close to uniform over 64 tokens: different seeds differ.
    outs = {tuple(generate(model, prompt, 16, temperature=1.0, seed=s)) for s in range(8)}
    assert len(outs) >= 6


def test_top_k_1_equals_greedy():
    model = make_model(**MHA)
    prompt = [5, 9, 11, 2]
    greedy = generate(model, prompt, 15, temperature=0)
    for seed in range(3):
        assert generate(model, prompt, 15, temperature=1.5, top_k=1, seed=seed) == greedy


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 0.0, None, None, g).tolist() == [1]
    assert {int(sample_next(logits, 1.0, 2, None, g)) for _ in range(200)} == {1, 3}
    # top_p smaller than the top token's own mass keeps only the top token.
    assert {int(sample_next(logits, 1.0, None, 0.1, g)) for _ in range(50)} == {1}


def test_generate_stops_at_eos():
    model = make_model(**MHA)
    prompt = [3, 1, 4, 1, 5]
    greedy = generate(model, prompt, 20, temperature=0)
    eos = greedy[4]
    stop = greedy.index(eos)
    got = generate(model, prompt, 20, temperature=0, eos_id=eos)
    assert got == greedy[: stop + 1]
    assert got[-1] == eos and eos not in got[:-1]


def test_generate_respects_max_new_tokens_and_max_seq_len():
    model = make_model(**MHA)                          # max_seq_len 32
    prompt = list(range(10))
    assert generate(model, prompt, 0, temperature=0) == []
    assert generate(model, [], 5, temperature=0) == []
    for n in (1, 3, 22):
        assert len(generate(model, prompt, n, temperature=0)) == n
    # Only 32 - 10 = 22 positions are left: asking for more stops there, without an error.
    long = generate(model, prompt, 1000, temperature=0)
    assert len(long) == 22
    assert long == greedy_without_cache(model, prompt, 22)
    assert len(generate(model, prompt, 1000, temperature=1.0, seed=0)) == 22


def test_too_long_prompt_is_left_truncated():
    """A prompt >= max_seq_len keeps its last max_seq_len - 1 tokens and still yields a token."""
    model = make_model(**GQA)
    L = GQA["max_seq_len"]
    keep = L - 1
    # Pick a prompt where keeping the head and keeping the tail predict different tokens, so the
    # assertion below tells "most recent context" apart from any other truncation.
    for seed in range(50):
        prompt = random_tokens((L + 9,), GQA["vocab_size"], seed=100 + seed).tolist()
        tail = greedy_without_cache(model, prompt[-keep:], 1)
        if tail != greedy_without_cache(model, prompt[:keep], 1):
            break
    else:
        pytest.fail("no prompt separates head and tail truncation")
    assert generate(model, prompt, 5, temperature=0) == tail          # exactly one token fits
    assert generate(model, prompt[-L:], 5, temperature=0) == greedy_without_cache(model, prompt[-keep:], 1)
    assert generate(model, prompt[-keep:], 5, temperature=0) == tail   # L-1 tokens: untouched
    assert len(generate(model, prompt, 5, temperature=1.0, seed=0)) == 1
    # Truncation then eos still works, and the caller's list is not modified.
    before = list(prompt)
    assert generate(model, prompt, 5, temperature=0, eos_id=tail[0]) == tail
    assert prompt == before


def test_generate_with_max_seq_len_1():
    model = make_model(vocab_size=16, d_model=16, n_layers=1, n_heads=2, max_seq_len=1)
    assert generate(model, [1, 2, 3], 4, temperature=0) == []


# ----------------------------------------------------------------------------------------------
# Checkpoints (the `tok` fixture is in conftest.py; tokenizer tests are in test_tokenizer.py)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(GQA), dict(MHA, tie_embeddings=False)], ids=["gqa-tied", "untied"])
def test_checkpoint_round_trip(kwargs, tmp_path, tok):
    model = make_model(seed=3, **kwargs)
    # Move the norms off their all-ones init so they are checked too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    tokens = random_tokens((2, 16), kwargs["vocab_size"], seed=4)
    with torch.no_grad():
        expected = model(tokens)
    save_model(tmp_path / "ckpt", model, tok)

    loaded, loaded_tok = load_model(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(tokens), expected)
    assert loaded_tok is not None and loaded_tok.encode("def main():") == tok.encode("def main():")
    tied = loaded.lm_head.weight is loaded.tok_emb.weight
    assert tied == kwargs.get("tie_embeddings", True)
    if tied:
        # The tie survives loading: updating one updates the other.
        with torch.no_grad():
            loaded.tok_emb.weight[0, 0] += 1.0
        assert loaded.lm_head.weight[0, 0] == loaded.tok_emb.weight[0, 0]
    else:
        assert not torch.equal(loaded.lm_head.weight, loaded.tok_emb.weight)


def test_checkpoint_is_safetensors_not_pickle(tmp_path):
    import safetensors

    model = make_model(**GQA)
    save_model(tmp_path, model)                        # no tokenizer
    raw = (tmp_path / WEIGHTS_FILE).read_bytes()
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")   # not a torch zip / pickle
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    names = set(header) - {"__metadata__"}
    # Tied weights are stored once.
    assert ("tok_emb.weight" in names) != ("lm_head.weight" in names)
    assert len(names) == len(model.state_dict()) - 1
    with safetensors.safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as f:
        assert set(f.keys()) == names
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["model"] == model.cfg.to_dict()
    loaded, loaded_tok = load_model(tmp_path)
    assert loaded_tok is None


def test_load_model_without_weights_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path)
    save_model(tmp_path / "ok", make_model(**MHA))
    (tmp_path / "ok" / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "ok")


def test_load_model_rejects_mismatched_weights(tmp_path):
    save_model(tmp_path, make_model(**MHA))
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["model"]["n_kv_heads"] = 2                     # shapes no longer match the stored tensors
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError):
        load_model(tmp_path)


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------

def test_tiny_model_memorises_a_sequence():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)).train()
    seq = random_tokens((1, 17), 32, seed=5).repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for step in range(300):
        loss = lm_loss(model(seq[:, :-1]), seq[:, 1:])
        first = loss.item() if first is None else first
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert first > 3.0                                 # ~log 32 at init: nothing learnt yet
    assert loss.item() < 0.1, f"loss {loss.item():.3f} after {step + 1} steps"
    # And the memorised sequence comes back out of generate().
    prompt = seq[0, :4].tolist()
    assert generate(model, prompt, 13, temperature=0) == seq[0, 4:].tolist()


# ----------------------------------------------------------------------------------------------
# ModelConfig
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(d_model=100, n_heads=3), "d_model"),
    (dict(d_model=64, n_heads=4, n_kv_heads=3), "n_kv_heads"),
    (dict(d_model=64, n_heads=4, n_kv_heads=8), "n_kv_heads"),
    (dict(d_model=12, n_heads=4), "d_model"),            # head_dim 3 is odd: RoPE needs pairs
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(n_layers=0), "n_layers"),
    (dict(max_seq_len=-1), "max_seq_len"),
    (dict(ffn_hidden=0), "ffn_hidden"),
])
def test_model_config_validation(kwargs, field):
    with pytest.raises(ValueError) as exc:
        ModelConfig(**kwargs)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_model_config_valid_and_round_trip():
    for kwargs in (MHA, GQA, MQA, dict(d_model=12, n_heads=3), dict(dropout=0.0), dict(dropout=0.5)):
        cfg = ModelConfig(**kwargs)
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig(d_model=256, n_heads=4).ffn_dim == 704     # 8/3 * 256 = 682.67 -> next multiple of 64
    assert ModelConfig(d_model=96, n_heads=4).ffn_dim == 256
    assert ModelConfig(ffn_hidden=100).ffn_dim == 100
    assert ModelConfig(n_heads=4, n_kv_heads=None).kv_heads == 4


def hand_count(cfg: ModelConfig) -> int:
    C, V, F = cfg.d_model, cfg.vocab_size, cfg.ffn_dim
    kv_dim = cfg.kv_heads * cfg.head_dim
    per_layer = (2 * C * C + 2 * C * kv_dim) + 3 * C * F + 2 * C
    head = 0 if cfg.tie_embeddings else V * C
    return V * C + cfg.n_layers * per_layer + C + head


@pytest.mark.parametrize("kwargs", [
    MHA, GQA, MQA,
    dict(vocab_size=1000, d_model=96, n_layers=3, n_heads=6, n_kv_heads=2, ffn_hidden=200),
    dict(vocab_size=4096, d_model=256, n_layers=4, n_heads=4),
    dict(vocab_size=500, d_model=64, n_layers=2, n_heads=4, tie_embeddings=False),
])
def test_num_params_matches_formula(kwargs):
    cfg = ModelConfig(**kwargs)
    model = Transformer(cfg)
    assert model.num_params() == hand_count(cfg)
    assert model.num_params(exclude_embeddings=True) == hand_count(cfg) - cfg.vocab_size * cfg.d_model
