"""Muon with AdamW (pipelines/training/muon.py): the orthogonalized update, the AdamW half equal to
torch's AdamW, group selection by make_optimizer, and the config check. No Ray.

    python -m pytest tests/test_muon.py -q
"""
from __future__ import annotations

import pytest
import torch

from modeling.config import ModelConfig
from modeling.transformer import Transformer, lm_loss
from pipelines.training.config import TrainConfig
from pipelines.training.muon import MuonWithAdamW, orthogonalize
from pipelines.training.schedule import make_optimizer

TINY = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)


@pytest.mark.parametrize("shape", [(48, 160), (160, 48), (64, 128)])
def test_orthogonalize_flattens_the_spectrum(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 0, shape[1]))   # a spread spectrum
    before = torch.linalg.svdvals(g)
    assert before.max() / before.min() > 5
    s = torch.linalg.svdvals(orthogonalize(g))
    assert orthogonalize(g).shape == g.shape
    assert s.min() > 0.5 and s.max() < 1.3     # Jordan's quintic: roughly [0.7, 1.2] after 5 steps


def _batch(step: int):
    g = torch.Generator().manual_seed(step)
    x = torch.randint(0, TINY.vocab_size, (4, 17), generator=g)
    return x[:, :-1], x[:, 1:]


def _train(model, optimizer, steps: int = 3) -> None:
    for i in range(steps):
        x, y = _batch(i)
        lm_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_adamw_groups_step_exactly_like_torch_adamw():
    def run(make):
        torch.manual_seed(0)
        model = Transformer(TINY)
        groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                  {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
        _train(model, make(groups))
        return model

    ours = run(lambda g: MuonWithAdamW(g, lr=3e-3, betas=(0.9, 0.95)))
    theirs = run(lambda g: torch.optim.AdamW(g, lr=3e-3, betas=(0.9, 0.95)))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_make_optimizer_gives_the_block_matrices_to_muon_and_its_step_is_orthogonal():
    torch.manual_seed(0)
    model = Transformer(TINY)
    cfg = TrainConfig(optimizer="muon", muon_lr=0.02, lr=3e-3, max_steps=10, warmup_steps=0, weight_decay=0.0)
    optimizer = make_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = [g for g in optimizer.param_groups if g["muon"]]
    assert len(muon) == 1 and muon[0]["lr"] == 0.02 and optimizer.param_groups[0]["lr"] == 3e-3
    in_muon = {names[id(p)] for p in muon[0]["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("layers.")}
    wq = model.layers[0].attn.wq.weight
    before = wq.detach().clone()
    _train(model, optimizer, steps=1)
    delta = (wq.detach() - before) / (0.02 * 0.2 * max(wq.shape) ** 0.5)   # the orthogonalized update
    s = torch.linalg.svdvals(delta)
    assert s.min() > 0.3 and s.max() < 1.3


def test_muon_needs_whole_matrices():
    with pytest.raises(ValueError, match="optimizer: muon .* use strategy: ddp"):
        TrainConfig(optimizer="muon", strategy="fsdp")
    with pytest.raises(ValueError, match="optimizer: must be 'adamw' or 'muon'"):
        TrainConfig(optimizer="sgd")
