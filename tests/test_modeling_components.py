"""Tests for the configurable components (positions, FFN, norms, pre/post norm, biases, padding
masks) and the 2017 encoder-decoder: shapes, leakage, masks, gradients, parameter counts, KV
cache, learning a reverse task, checkpoints. Tiny models, one thread, a few seconds in all.
"""
from __future__ import annotations

import pytest
import torch

from modeling.checkpoint import load_model, save_model
from modeling.config import ModelConfig
from modeling.encoder_decoder import EncoderDecoder, build_model
from modeling.hf import check_exportable
from modeling.layers import KVCache
from modeling.sizing import count_params
from modeling.transformer import Transformer, lm_loss

BASE = dict(vocab_size=40, d_model=32, n_layers=2, n_heads=4, max_seq_len=24)
VARIANTS = {
    "llama": {},
    "gpt2": dict(positions="learned", ffn="gelu", norm="layernorm", bias=True),
    "2017-decoder": dict(positions="sinusoidal", ffn="relu", norm="layernorm", norm_position="post", bias=True),
    "rope-relu-post-gqa": dict(ffn="relu", norm_position="post", n_kv_heads=2),
    "learned-swiglu-layernorm-nobias": dict(positions="learned", norm="layernorm", bias=False, tie_embeddings=False),
}
DECODERS = pytest.mark.parametrize("extra", list(VARIANTS.values()), ids=list(VARIANTS))
SEQ2SEQ = dict(arch="encoder_decoder", vocab_size=12, d_model=32, n_layers=2, n_heads=4, ffn_hidden=64,
               max_seq_len=16, dropout=0.0)


# Other engineers share these 2 cores: train and infer on one thread (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_model(ModelConfig(**kwargs)).eval()


def rand(shape, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def test_defaults_unchanged_and_arch_defaults():
    cfg = ModelConfig()
    assert (cfg.arch, cfg.positions, cfg.ffn, cfg.norm, cfg.norm_position, cfg.bias) == \
        ("decoder_only", "rope", "swiglu", "rmsnorm", "pre", False)
    ed = ModelConfig(arch="encoder_decoder")
    assert (ed.positions, ed.ffn, ed.norm, ed.norm_position, ed.bias) == ("sinusoidal", "relu", "layernorm", "post", True)
    assert ed.ffn_dim == 4 * ed.d_model
    assert ModelConfig.from_dict(ed.to_dict()) == ed
    assert ModelConfig(arch="encoder_decoder", positions="rope").positions == "rope"    # explicit wins


def test_transformer_2017_base_size_matches_the_paper():
    """Table 3 of Vaswani et al.: the base model has 65M parameters (shared 37k-token vocabulary)."""
    cfg = ModelConfig.transformer_2017()
    assert (cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.n_layers, cfg.encoder_layers) == (512, 8, 2048, 6, 6)
    assert count_params(cfg) == pytest.approx(65e6, rel=0.05)


@pytest.mark.parametrize("kwargs, field", [
    (dict(positions="alibi"), "positions"), (dict(ffn="swish"), "ffn"), (dict(norm="batchnorm"), "norm"),
    (dict(norm_position="sandwich"), "norm_position"), (dict(arch="encoder_only"), "arch"),
    (dict(arch="encoder_decoder", n_encoder_layers=0), "n_encoder_layers"),
    (dict(positions="sinusoidal", d_model=31, n_heads=1), "d_model"),
])
def test_component_validation(kwargs, field):
    with pytest.raises(ValueError) as exc:
        ModelConfig(**kwargs)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_export_refuses_non_llama_components():
    check_exportable(ModelConfig())
    for extra in ({"ffn": "gelu"}, {"positions": "learned"}, {"norm": "layernorm"}, {"bias": True},
                  {"norm_position": "post"}, {"arch": "encoder_decoder"}):
        with pytest.raises(ValueError):
            check_exportable(ModelConfig(**extra))


# ----------------------------------------------------------------------------------------------
# Decoder-only variants
# ----------------------------------------------------------------------------------------------

@DECODERS
def test_variant_no_leakage_shapes_and_gradients(extra):
    model = make(**BASE, **extra)
    tokens = rand((2, 10), BASE["vocab_size"], seed=1)
    with torch.no_grad():
        base = model(tokens)
        assert base.shape == (2, 10, BASE["vocab_size"])
        for t in (2, 6):
            changed = tokens.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1) % BASE["vocab_size"]
            out = model(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=0)
            assert not torch.allclose(out[:, t + 1], base[:, t + 1], atol=1e-5)
    model.train()
    lm_loss(model(tokens[:, :-1]), tokens[:, 1:]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert count_params(model.cfg) == model.num_params()


@DECODERS
def test_left_padding_gives_the_unpadded_logits(extra):
    """A left-padded row, masked, computes exactly what the row computes alone (positions count
    real tokens only), whatever the padding tokens are; and the KV cache keeps the mask."""
    model = make(**BASE, **extra)
    V, n_pad = BASE["vocab_size"], 5
    row = rand((1, 9), V, seed=2)
    with torch.no_grad():
        alone = model(row)
        for pad_seed in (3, 4):
            padded = torch.cat([rand((1, n_pad), V, seed=pad_seed), row], dim=1)
            mask = torch.cat([torch.zeros(1, n_pad, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)], dim=1)
            out = model(padded, padding_mask=mask)
            torch.testing.assert_close(out[:, n_pad:], alone, atol=1e-5, rtol=1e-4)
            assert torch.isfinite(out).all()
        cache = KVCache(model.cfg.n_layers)
        first = model(padded[:, :-3], cache, padding_mask=mask[:, :-3])
        rest = [model(padded[:, i:i + 1], cache) for i in range(padded.shape[1] - 3, padded.shape[1])]
        torch.testing.assert_close(torch.cat([first, *rest], 1)[:, n_pad:], alone, atol=1e-5, rtol=1e-4)


def test_post_norm_has_no_final_norm_and_pre_norm_has_one():
    assert isinstance(make(**BASE, norm_position="post").norm, torch.nn.Identity)
    assert not isinstance(make(**BASE).norm, torch.nn.Identity)


# ----------------------------------------------------------------------------------------------
# Encoder-decoder
# ----------------------------------------------------------------------------------------------

def test_encoder_decoder_shapes_causality_and_source_padding():
    model = make(**SEQ2SEQ)
    assert isinstance(model, EncoderDecoder) and count_params(model.cfg) == model.num_params()
    src, tgt = rand((2, 7), 12, seed=1), rand((2, 6), 12, seed=2)
    with torch.no_grad():
        base = model(src, tgt)
        assert base.shape == (2, 6, 12)
        changed = tgt.clone()
        changed[:, 4] = (changed[:, 4] + 1) % 12                      # target: causal
        torch.testing.assert_close(model(src, changed)[:, :4], base[:, :4], atol=1e-5, rtol=0)
        src2 = src.clone()
        src2[:, -1] = (src2[:, -1] + 1) % 12                          # source: seen from every position
        assert not torch.allclose(model(src2, tgt)[:, 0], base[:, 0], atol=1e-5)
        # Source padding (right side) is invisible whatever its tokens are.
        mask = torch.ones(2, 7, dtype=torch.bool)
        mask[:, 5:] = False
        masked = model(src, tgt, src_mask=mask)
        src3 = src.clone()
        src3[:, 5:] = (src3[:, 5:] + 3) % 12
        torch.testing.assert_close(model(src3, tgt, src_mask=mask), masked, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(src[:, :5], tgt), masked, atol=1e-5, rtol=1e-4)


def test_encoder_decoder_kv_cache_equals_full_decode():
    model = make(**SEQ2SEQ, n_encoder_layers=3)
    src, tgt = rand((2, 7), 12, seed=1), rand((2, 9), 12, seed=2)
    with torch.no_grad():
        memory = model.encode(src)
        full = model.decode(tgt, memory)
        cache = KVCache(model.cfg.n_layers)
        pieces = [model.decode(tgt[:, :4], memory, cache=cache)]
        pieces += [model.decode(tgt[:, i:i + 1], memory, cache=cache) for i in range(4, 9)]
    assert cache.length == 9 and len(cache.cross) == model.cfg.n_layers
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=0)


def reverse_batch(g: torch.Generator, B: int = 64, L: int = 5, bos: int = 1):
    src = torch.randint(3, 12, (B, L), generator=g)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((B, 1), bos), tgt[:, :-1]], 1), tgt


def test_encoder_decoder_learns_to_reverse(tmp_path):
    """The 2017 architecture (post-norm, ReLU, LayerNorm, biases, sinusoidal positions,
    cross-attention) learns to reverse sequences to near-zero loss in a test-sized run, decodes them
    greedily, and survives a checkpoint. Untied embeddings here: at d_model 32 with the embedding
    tied to the LM head, sinusoidal positions stayed at chance (loss ln 9) for 300 steps (Adam lr
    1e-2 or 1e-3, d_model 32 or 64, post- or pre-norm); untied, loss is 0.02 by step 100 and
    0.001 by 175. Tied with learned positions it also converges (~75 steps)."""
    from modeling.generation import generate_seq2seq

    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(**{**SEQ2SEQ, "n_layers": 1, "positions": "sinusoidal",
                                          "tie_embeddings": False})).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        src, tgt_in, tgt = reverse_batch(g)
        loss = lm_loss(model(src, tgt_in), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05, f"loss {loss.item():.3f} after {step + 1} steps"
    src, _, tgt = reverse_batch(torch.Generator().manual_seed(99), B=8)
    out = generate_seq2seq(model, src.tolist(), 5, bos_id=1, temperature=0)
    assert sum(o == t for o, t in zip(out, tgt.tolist())) >= 7                    # unseen sources
    save_model(tmp_path, model)
    loaded, _ = load_model(tmp_path)
    assert isinstance(loaded, EncoderDecoder) and loaded.cfg == model.cfg
    assert generate_seq2seq(loaded, src.tolist(), 5, bos_id=1, temperature=0) == out


def test_transformer_rejects_encoder_decoder_config():
    with pytest.raises(ValueError, match="arch"):
        Transformer(ModelConfig(arch="encoder_decoder"))
    with pytest.raises(ValueError, match="arch"):
        EncoderDecoder(ModelConfig())
