"""LoRA adapters (modeling/lora.py): the adapted model starts equal to the base, only adapters
train, and merging (in place, or from a state dict as checkpoints do) gives the same logits.

    python -m pytest -q tests/test_lora.py
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.lora import LoraConfig, apply_lora, count_trainable, lora_scales, merge_lora, merge_lora_state_dict

CFG = ModelConfig(vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)


@pytest.fixture(scope="module")
def base(one_torch_thread):
    torch.manual_seed(0)
    return build_model(CFG).eval()


def _tokens():
    return torch.randint(0, CFG.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))


def _train_adapters(model: nn.Module, steps: int = 5) -> None:
    """A few real optimizer steps, so B is no longer zero and the update is not trivial."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = _tokens()
    model.train()
    for _ in range(steps):
        logits = model(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_adapted_model_starts_equal_to_base_and_trains_only_adapters(base):
    model = apply_lora(copy.deepcopy(base), LoraConfig(rank=4, alpha=8, targets=["wq", "wv", "w2"]))
    x = _tokens()
    assert torch.equal(model(x), base(x))                                  # B = 0: exactly the base
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n.rsplit(".lora_", 1)[0] for n in trainable}
    assert adapted == {f"layers.{i}.{m}" for i in range(2) for m in ("attn.wq", "attn.wv", "ffn.w2")}
    assert set(lora_scales(model).values()) == {2.0}                       # alpha / rank
    n_trainable, total = count_trainable(model)
    # wq: 64->64, wv: 64->32 (GQA), w2: 192->64; each adds r * (in + out).
    assert n_trainable == 2 * 4 * ((64 + 64) + (64 + 32) + (192 + 64))
    assert total == sum(p.numel() for p in {id(p): p for p in base.parameters()}.values()) + n_trainable


def test_merge_equals_adapted_model(base):
    model = apply_lora(copy.deepcopy(base), LoraConfig(rank=4, alpha=16, dropout=0.1))
    _train_adapters(model)
    x = _tokens()
    adapted = model(x)
    assert (adapted - base(x)).abs().max() > 1e-3                          # the adapters changed something

    # As checkpoints do it: fold the adapters into a state dict, load it into a plain model.
    plain = build_model(CFG).eval()
    plain.load_state_dict(merge_lora_state_dict(model.state_dict(), lora_scales(model)))
    torch.testing.assert_close(plain(x), adapted, atol=1e-5, rtol=0)

    merged = merge_lora(model)                                             # in place
    assert all(type(m) is nn.Linear for n, m in merged.named_modules() if n.endswith(".wq"))
    assert list(merged.state_dict()) == list(base.state_dict())
    assert lora_scales(merged) == {}
    torch.testing.assert_close(merged(x), adapted, atol=1e-5, rtol=0)
    # Only the adapted projections moved; the embedding (and tied head) and norms are the base's.
    assert torch.equal(merged.tok_emb.weight, base.tok_emb.weight)
    assert torch.equal(merged.layers[0].attn_norm.weight, base.layers[0].attn_norm.weight)
    assert not torch.equal(merged.layers[0].attn.wq.weight, base.layers[0].attn.wq.weight)


def test_plain_model_state_dict_passes_through(base):
    state = base.state_dict()
    assert lora_scales(base) == {}
    assert merge_lora_state_dict(state, {}).keys() == state.keys()


@pytest.mark.parametrize("kwargs, field", [({"rank": 0}, "rank"), ({"alpha": 0}, "alpha"),
                                            ({"dropout": 1.0}, "dropout"), ({"targets": ["lm_head"]}, "targets"),
                                            ({"targets": []}, "targets")])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        LoraConfig(**kwargs)
