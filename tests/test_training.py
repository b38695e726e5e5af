"""Training stage: schedule, packed data, and real Ray Train runs on 2 CPU workers (DDP, FSDP2, resume)."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest

from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from pipelines.tokenize import unigram_cross_entropy
from pipelines.training import TrainConfig, run_pretrain
from pipelines.training.data import PackedTokens
from pipelines.training.schedule import lr_at

TINY_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=64)


def _stdlib_text() -> str:
    import collections, json as json_mod, os, pathlib, re, textwrap  # noqa: E401  real prose

    docs = []
    for module in (collections, json_mod, os, pathlib, re, textwrap):
        docs.append(inspect.getdoc(module) or "")
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and (inspect.isfunction(obj) or inspect.isclass(obj)):
                docs.append(doc)
    return "\n\n".join(docs)


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    """A real tokens/ folder as the tokenize stage writes it, from stdlib docstrings."""
    root = tmp_path_factory.mktemp("run")
    text = _stdlib_text()
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=512)
    tok.save(root / "tokenizer")
    ids = np.array(tok.encode(text), dtype=np.uint16)
    split = int(len(ids) * 0.9)
    (root / "tokens").mkdir()
    ids[:split].tofile(root / "tokens" / "train.bin")
    ids[split:].tofile(root / "tokens" / "val.bin")
    meta = {"vocab_size": tok.vocab_size, "dtype": "uint16", "eos_id": tok.eos_id,
            "unigram_val_loss": unigram_cross_entropy(ids[:split], ids[split:], tok.vocab_size)}
    (root / "tokens" / "meta.json").write_text(json.dumps(meta))
    return root


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))          # monotone decay after warmup
    assert lr_at(100, cfg) == pytest.approx(1e-4)                   # ends at lr * min_lr_ratio


def test_packed_batches_are_resumable_and_val_windows_ignore_batch_size(tokens_dir):
    data = PackedTokens(tokens_dir / "tokens", "train", seq_len=32)
    x1, y1 = data.batch(4, seed=0, step=7, rank=1)
    x2, y2 = data.batch(4, seed=0, step=7, rank=1)
    assert x1.shape == (4, 32) and (x1 == x2).all() and (y1 == y2).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()                            # targets are inputs shifted by one
    assert not (data.batch(4, 0, 7, rank=0)[0] == x1).all()           # ranks see different rows
    val = PackedTokens(tokens_dir / "tokens", "val", seq_len=32)

    def windows(batch_size, world):
        return sorted(tuple(r.tolist()) for rank in range(world)
                      for x, _ in val.val_batches(batch_size, 2048, rank, world) for r in x)
    assert windows(4, 1) == windows(16, 2) == windows(3, 3)


def _history(result) -> list[dict]:
    return [json.loads(line) for line in open(result.history_path)]


def test_ddp_pretraining_on_two_workers_learns_and_checkpoints(ray_session, tokens_dir, tmp_path):
    cfg = TrainConfig(seq_len=64, batch_size=8, max_steps=40, warmup_steps=4, eval_every=20,
                      log_every=10, eval_tokens=4096, lr=3e-3, num_workers=2)
    result = run_pretrain(TINY_MODEL, cfg, tokens_dir / "tokens", tokens_dir / "tokenizer", tmp_path)
    history = _history(result)
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    meta = json.loads((tokens_dir / "tokens" / "meta.json").read_text())
    assert result.metrics["val_loss"] < meta["unigram_val_loss"]
    assert result.metrics["tokens"] == 40 * 8 * 64 * 2                 # both workers' tokens counted
    ckpt = result.checkpoint_dir
    import os
    assert {"model", "dcp", "state.json"} <= set(os.listdir(ckpt))
    assert len([f for f in os.listdir(os.path.join(ckpt, "dcp")) if f.endswith(".distcp")]) == 2  # one shard file per rank

    from modeling.checkpoint import load_model
    model, tok = load_model(result.model_dir)
    assert tok is not None and model.cfg.vocab_size == meta["vocab_size"]


def test_fsdp_matches_ddp_and_a_killed_worker_resumes_to_the_same_loss(ray_session, tokens_dir, tmp_path):
    """FSDP2 gives DDP's losses (guards pytorch#162338); a worker killed mid-run restarts the group
    from the last checkpoint and ends exactly where an uninterrupted run ends."""
    cfg = TrainConfig(seq_len=64, batch_size=8, max_steps=20, warmup_steps=2, eval_every=10,
                      log_every=10, eval_tokens=4096, num_workers=2, max_failures=1)
    args = (tokens_dir / "tokens", tokens_dir / "tokenizer", tmp_path)
    ddp = run_pretrain(TINY_MODEL, cfg, *args, name="ddp")
    fsdp = run_pretrain(TINY_MODEL, dataclasses.replace(cfg, strategy="fsdp"), *args, name="fsdp")
    for a, b in zip(_history(ddp), _history(fsdp), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a.get("val_loss", 0) == pytest.approx(b.get("val_loss", 0), abs=1e-5)

    marker = tmp_path / "killed.txt"
    crashed = run_pretrain(TINY_MODEL, cfg, *args, name="crash",
                           fault_injection={"step": 15, "rank": 1, "marker": str(marker), "delay_s": 5})
    assert marker.exists()                                            # the worker really died
    assert crashed.metrics["step"] == 20
    # A restart from scratch would log step 10 twice; resuming from the step-10 checkpoint does not.
    assert [h["step"] for h in _history(crashed)] == [10, 20]
    # Resumed from step 10 with model, optimizer and data position restored: same final losses.
    assert crashed.metrics["val_loss"] == pytest.approx(ddp.metrics["val_loss"], abs=1e-4)
    assert crashed.metrics["loss"] == pytest.approx(ddp.metrics["loss"], abs=1e-4)
