"""Training stage: schedules, packed data, document masking, early stopping, checkpoints, and real
Ray Train runs on 2 CPU workers (DDP, FSDP2, a killed worker, resume on another worker count).

One uninterrupted 2-worker run (module-scoped `baseline`) is the reference for several tests.
    timeout 900 python -m pytest -q tests/test_training.py
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from pipelines.tokenize import write_packed_tokens
from pipelines.training import TrainConfig, run_pretrain
from pipelines.training.checkpointing import IncompleteCheckpoint, verify_checkpoint
from pipelines.training.data import PackedTokens, document_causal_mask
from pipelines.training.metrics import EarlyStopping, gpu_peak_flops
from pipelines.training.schedule import lr_at, make_scheduler

TINY_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
# Dropout makes the resume tests depend on restoring each rank's RNG state, not just the weights.
DROPOUT_MODEL = dataclasses.replace(TINY_MODEL, dropout=0.1)
BASE = TrainConfig(seq_len=64, batch_size=8, max_steps=40, warmup_steps=4, eval_every=20, log_every=10,
                   eval_tokens=4096, lr=3e-3, num_workers=2, max_failures=1, keep_checkpoints=2,
                   # 40 steps are 2 epochs of this 20k-token corpus; there the epoch-exact order plateaus
                   # near the unigram bar (val 5.41-5.43 against 5.40; with replacement 5.37, seeds 0-2
                   # alike), an open finding of issue 19. The epoch order's resume and re-sharding are
                   # tested in tests/test_token_loader.py and tests/test_training_s3.py.
                   data_order="random")


def _stdlib_docs() -> list[str]:
    import collections, json as json_mod, os, pathlib, re, textwrap  # noqa: E401  real prose

    docs = []
    for module in (collections, json_mod, os, pathlib, re, textwrap):
        docs.append(inspect.getdoc(module) or "")
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and (inspect.isfunction(obj) or inspect.isclass(obj)):
                docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    """A real tokens/ folder as the tokenize stage writes it, from stdlib docstrings: documents
    packed into one stream, each followed by the end-of-text token."""
    root = tmp_path_factory.mktemp("run")
    docs = _stdlib_docs()
    text = "\n\n".join(docs)
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=512)
    tok.save(root / "tokenizer")
    ids = np.array([i for doc in docs for i in tok.encode(doc) + [tok.eos_id]], dtype=np.uint16)
    split = int(len(ids) * 0.9)
    write_packed_tokens(root / "tokens", tok, ids[:split], ids[split:])
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




def test_wsd_schedule_holds_then_decays_linear_or_1_sqrt_and_torch_scheduler_follows():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, max_steps=100, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.2)
    linear = dataclasses.replace(cfg, decay_shape="linear")
    assert lr_at(9, cfg) == pytest.approx(1e-3) and lr_at(0, cfg) == pytest.approx(1e-4)     # warmup
    assert all(lr_at(s, cfg) == 1e-3 for s in range(10, 80))                                 # stable
    assert lr_at(90, linear) == pytest.approx(1e-4 + 0.9e-3 * 0.5)                           # halfway
    assert lr_at(90, cfg) == pytest.approx(1e-4 + 0.9e-3 * (1 - 0.5 ** 0.5))                 # 1 - sqrt(p)
    assert all(lr_at(s, cfg) < lr_at(s, linear) for s in range(81, 100))                     # 1-sqrt drops faster
    assert lr_at(100, cfg) == pytest.approx(1e-4) == lr_at(100, linear)                      # the floor
    decay = [lr_at(s, cfg) for s in range(80, 101)]
    assert all(a > b for a, b in zip(decay, decay[1:]))

    import torch
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    seen = []
    for _ in range(60):
        seen.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    assert seen == pytest.approx([lr_at(s, cfg) for s in range(60)])
    state = json.loads(json.dumps(sched.state_dict()))                  # lands in state.json
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr)
    sched2 = make_scheduler(opt2, cfg)
    sched2.load_state_dict(state)
    opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(lr_at(61, cfg))
    with pytest.raises(ValueError, match="^warmup_steps: wsd"):
        TrainConfig(max_steps=100, warmup_steps=90, schedule="wsd", decay_fraction=0.2)
    with pytest.raises(ValueError, match="^decay_fraction"):
        TrainConfig(schedule="wsd", decay_fraction=0.0)


def test_early_stopping_counts_evaluations_without_improvement_beyond_min_delta():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert [stopper.update(v) for v in (3.0, 2.95, 2.5, 2.45, 2.41)] == [False, False, False, False, True]
    assert stopper.best == 2.5                                        # 2.45 and 2.41 were within min_delta
    never = EarlyStopping(patience=0, min_delta=0.0)
    assert not any(never.update(v) for v in (1.0, 2.0, 3.0, 4.0))
    restored = EarlyStopping(2, 0.1)
    restored.load_state_dict(json.loads(json.dumps(stopper.state_dict())))
    assert restored.best == 2.5 and restored.bad_evals == 2


def test_document_mask_keeps_packed_documents_apart(one_torch_thread):
    import torch

    from modeling.encoder_decoder import build_model

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY_MODEL, vocab_size=50)).eval()
    eos = 0
    x = torch.randint(1, 50, (2, 24))
    x[:, 9] = eos                                                      # doc 1: 0..9 (EOS ends it), doc 2: 10..
    x[1, 17] = eos                                                     # row 1 has a third document
    changed = x.clone()
    changed[:, 2:9] = torch.randint(1, 50, (2, 7))                     # rewrite document 1
    with torch.no_grad():
        masked = model(x, attn_mask=document_causal_mask(x, eos))
        masked_changed = model(changed, attn_mask=document_causal_mask(changed, eos))
        plain, plain_changed = model(x), model(changed)
    assert torch.equal(masked[:, 10:], masked_changed[:, 10:])         # document 2 never sees document 1
    assert not torch.allclose(masked[:, 2:9], masked_changed[:, 2:9])
    assert not torch.allclose(plain[:, 10:], plain_changed[:, 10:])    # without the mask it does
    no_eos = torch.randint(1, 50, (2, 24))                             # one document: the plain causal mask
    with torch.no_grad():
        assert torch.allclose(model(no_eos), model(no_eos, attn_mask=document_causal_mask(no_eos, eos)), atol=1e-6)
    mask = document_causal_mask(x, eos)[1, 0]
    assert mask[9, 0] and not mask[10, 9] and mask[17, 10] and not mask[18, 17]


def test_gpu_peak_table_matches_device_names():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA H200") == 989.4e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("NVIDIA L4") == 121e12
    assert gpu_peak_flops("NVIDIA L40S") is None                     # not in the table: no MFU, no guess


def test_cpu_mfu_peak_is_remeasured_at_evaluations_a_minute_apart_and_keeps_the_fastest(monkeypatch):
    import torch

    from pipelines.training import loop

    measured = iter([100.0, 150.0, 120.0])                             # the host's matmul rate drifts
    calls = []
    monkeypatch.setattr(loop, "peak_flops_per_worker", lambda device, threads: calls.append(device.type) or next(measured))
    peak = loop._GroupPeak(torch.device("cpu"), 2)
    assert peak.mfu(50.0, 10.0) == 0.5                                 # first logged step: measured (100)
    assert peak.mfu(50.0, 60.0) == 0.5                                 # plain logged step: not again
    assert peak.mfu(75.0, 10.0, remeasure=True) == 0.5                 # evaluation, 70 s later: 150, kept
    assert peak.mfu(75.0, 30.0, remeasure=True) == 0.5                 # evaluation, 30 s later: not again
    assert peak.mfu(60.0, 30.0, remeasure=True) == 0.4                 # 60 s later: 120, slower, ignored
    assert calls == ["cpu"] * 3

    monkeypatch.setattr(loop, "peak_flops_per_worker", lambda device, threads: calls.append(device.type) or 1000.0)
    gpu = loop._GroupPeak(torch.device("cuda"), 1)                     # a datasheet figure: never re-measured
    assert gpu.mfu(500.0, 100.0) == 0.5 and gpu.mfu(500.0, 100.0, remeasure=True) == 0.5
    assert calls.count("cuda") == 1


def _history(result) -> list[dict]:
    return [json.loads(line) for line in open(result.history_path)]


def _args(tokens_dir, out):
    return tokens_dir / "tokens", tokens_dir / "tokenizer", out


def _checkpoint_at(result, step: int) -> Path:
    found = [p.parent for p in Path(result.run_path).glob("checkpoint_*/state.json")
             if json.loads(p.read_text())["step"] == step]
    assert found, f"no kept checkpoint at step {step}"
    return found[0]


@pytest.fixture(scope="module")
def baseline(ray_session, tokens_dir, tmp_path_factory):
    """One uninterrupted 2-worker DDP run (dropout on), the reference for several tests."""
    return run_pretrain(DROPOUT_MODEL, BASE, *_args(tokens_dir, tmp_path_factory.mktemp("baseline")), name="base")


def test_ddp_pretraining_on_two_workers_learns_logs_and_checkpoints(baseline, tokens_dir):
    result = baseline
    history = _history(result)
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    meta = json.loads((tokens_dir / "tokens" / "meta.json").read_text())
    assert result.metrics["val_loss"] < meta["unigram_val_loss"]
    assert result.metrics["tokens"] == 40 * 8 * 64 * 2                 # both workers' tokens counted
    for h in history:                                                  # the per-step metrics
        assert h["lr"] == pytest.approx(lr_at(h["step"] - 1, BASE))    # the lr the logged step used
        assert 0 < h["grad_norm"] < 100 and h["tokens_per_s"] > 0
        assert 0 < h["mfu"] < 1.0                                      # vs the fp32 matmul rate measured per worker
        assert 0.05 < h["peak_mem_gb"] < 20                            # peak RSS of the largest worker
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(Path(result.history_path).parent))

    ckpt = Path(result.checkpoint_dir)
    assert {"model", "dcp", "rng", "state.json"} <= set(os.listdir(ckpt))
    assert len([f for f in os.listdir(ckpt / "dcp") if f.endswith(".distcp")]) == 2  # one shard file per rank
    assert sorted(os.listdir(ckpt / "rng")) == ["rank0.pt", "rank1.pt"]
    state = verify_checkpoint(ckpt)
    assert state["step"] == 40 and state["world_size"] == 2 and state["scheduler"]["last_epoch"] == 40
    assert state["data_rows"] == 40 * 8 * 2                            # the epoch-exact stream's position
    assert state["early_stopping"]["best"] == pytest.approx(min(h["val_loss"] for h in history if "val_loss" in h))

    from modeling.checkpoint import load_model
    model, tok = load_model(result.model_dir)
    assert tok is not None and model.cfg.vocab_size == meta["vocab_size"]


def test_fsdp_matches_ddp_and_a_killed_worker_resumes_to_the_same_loss(baseline, tokens_dir, tmp_path):
    """FSDP2 gives DDP's losses (guards pytorch#162338); a worker killed mid-run restarts the group
    from the last checkpoint (model, optimizer, scheduler, RNG, data position) and ends exactly
    where the uninterrupted run ends, dropout included."""
    fsdp = run_pretrain(DROPOUT_MODEL, dataclasses.replace(BASE, strategy="fsdp"), *_args(tokens_dir, tmp_path), name="fsdp")
    for a, b in zip(_history(baseline), _history(fsdp), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a.get("val_loss", 0) == pytest.approx(b.get("val_loss", 0), abs=1e-5)

    marker = tmp_path / "killed.txt"
    crashed = run_pretrain(DROPOUT_MODEL, BASE, *_args(tokens_dir, tmp_path), name="crash",
                           fault_injection={"step": 30, "rank": 1, "marker": str(marker), "delay_s": 5})
    assert marker.exists()                                            # the worker really died
    assert crashed.metrics["step"] == 40
    # A restart from scratch would log steps 10 and 20 twice; resuming from the step-20 checkpoint does not.
    assert [h["step"] for h in _history(crashed)] == [10, 20, 30, 40]
    assert crashed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-4)
    assert crashed.metrics["loss"] == pytest.approx(baseline.metrics["loss"], abs=1e-4)
    assert _history(crashed)[2]["loss"] == pytest.approx(_history(baseline)[2]["loss"], abs=1e-4)


def test_resume_from_a_chosen_checkpoint_on_one_worker(baseline, tokens_dir, tmp_path):
    """train.resume_from a 2-worker checkpoint, on 1 worker: DCP re-shards, training continues."""
    step20 = _checkpoint_at(baseline, 20)
    cfg = dataclasses.replace(BASE, num_workers=1, resume_from=str(step20))
    resumed = run_pretrain(DROPOUT_MODEL, cfg, *_args(tokens_dir, tmp_path), name="resumed")
    history = _history(resumed)
    assert [h["step"] for h in history] == [30, 40]                   # started at step 21, not 1
    val20 = next(h["val_loss"] for h in _history(baseline) if h["step"] == 20)
    assert resumed.metrics["val_loss"] < val20                        # kept improving on the checkpoint
    # Other rows and dropout masks than the 2-worker run, so close to it, not equal.
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=0.15)
    ckpt = Path(resumed.checkpoint_dir)
    assert len([f for f in os.listdir(ckpt / "dcp") if f.endswith(".distcp")]) == 1
    state = json.loads((ckpt / "state.json").read_text())
    # The 1-worker run continued the 2-worker run's row stream at the checkpoint's position.
    assert state["world_size"] == 1 and state["data_rows"] == 20 * 8 * 2 + 20 * 8


def test_half_written_or_foreign_checkpoints_are_refused(baseline, tokens_dir, tmp_path):
    source = _checkpoint_at(baseline, 20)

    def damaged(name, damage):
        folder = tmp_path / name
        shutil.copytree(source, folder)
        damage(folder)
        return folder

    no_state = damaged("no_state", lambda f: (f / "state.json").unlink())
    shard = lambda f: sorted((f / "dcp").glob("*.distcp"))[-1]  # noqa: E731
    cut = damaged("cut_shard", lambda f: os.truncate(shard(f), shard(f).stat().st_size // 2))
    no_meta = damaged("no_meta", lambda f: (f / "dcp" / ".metadata").unlink())
    no_rng = damaged("no_rng", lambda f: (f / "rng" / "rank1.pt").unlink())
    for folder, why in [(no_state, "no state.json"), (cut, "shorter than its DCP metadata"),
                        (no_meta, ".metadata is missing"), (no_rng, r"ranks \[1\]")]:
        with pytest.raises(IncompleteCheckpoint, match=why):
            verify_checkpoint(folder)
        # The driver refuses it before any worker starts.
        with pytest.raises(ValueError, match="^train.resume_from: .*" + why):
            run_pretrain(DROPOUT_MODEL, dataclasses.replace(BASE, resume_from=str(folder)),
                         *_args(tokens_dir, tmp_path), name="refused")
    with pytest.raises(ValueError, match=r"train.resume_from: .* different model \(model.d_model"):
        run_pretrain(dataclasses.replace(DROPOUT_MODEL, d_model=32), dataclasses.replace(BASE, resume_from=str(source)),
                     *_args(tokens_dir, tmp_path), name="refused")


def test_early_stopping_stops_every_rank_and_best_of_still_picks_the_best(ray_session, tokens_dir, tmp_path):
    """min_delta larger than any possible gain: patience 2 stops at the third evaluation. The same
    run trains with the wsd schedule and document masking, end to end."""
    cfg = dataclasses.replace(BASE, max_steps=40, eval_every=2, log_every=2, early_stopping_patience=2,
                              early_stopping_min_delta=100.0, schedule="wsd", document_mask=True)
    result = run_pretrain(TINY_MODEL, cfg, *_args(tokens_dir, tmp_path), name="early")
    history = _history(result)
    assert [h["step"] for h in history] == [2, 4, 6]                  # both ranks left the loop together
    assert [h["lr"] for h in history] == pytest.approx([lr_at(s - 1, cfg) for s in (2, 4, 6)])
    best = min(history, key=lambda h: h["val_loss"])
    assert result.metrics["step"] == best["step"] and result.metrics["val_loss"] == best["val_loss"]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_checkpoint_round_trip_in_one_process_restores_everything_a_resume_needs(tokens_dir, tmp_path, one_torch_thread,
                                                                                optimizer):
    """save_checkpoint then load_checkpoint (no Ray, world size 1): the next step after loading is
    bit-identical to the next step without the round trip (weights, AdamW moments or Muon momentum,
    lr, dropout)."""
    import random

    import torch

    from modeling.encoder_decoder import build_model
    from pipelines.training.checkpointing import load_checkpoint, save_checkpoint, seed_rank
    from pipelines.training.schedule import make_optimizer

    mcfg = dataclasses.replace(DROPOUT_MODEL, vocab_size=512)
    cfg = dataclasses.replace(BASE, num_workers=1, optimizer=optimizer)
    data = PackedTokens(tokens_dir / "tokens", "train", 64)

    def fresh():
        torch.manual_seed(0)
        model = build_model(mcfg)
        optimizer = make_optimizer(model, cfg)
        return model, optimizer, make_scheduler(optimizer, cfg)

    def step(model, optimizer, scheduler, i):
        data.loss(model, data.batch(4, 0, i, 0), "cpu")[0].backward()
        optimizer.step(), scheduler.step(), optimizer.zero_grad()

    model, optimizer, scheduler = fresh()
    seed_rank(0, 0, 0)
    for i in range(3):
        step(model, optimizer, scheduler, i)
    save_checkpoint(str(tmp_path), model, optimizer, scheduler, {"step": 3, "seed": 0}, mcfg,
                    str(tokens_dir / "tokenizer"), rank=0, world=1)
    draws = (random.random(), np.random.rand())
    step(model, optimizer, scheduler, 3)                              # the uninterrupted step 4

    again, opt2, sched2 = fresh()
    torch.manual_seed(123), random.seed(1), np.random.seed(1)         # a different process's RNG
    state = load_checkpoint(str(tmp_path), again, opt2, sched2, rank=0, world=1, seed=0)
    assert state["step"] == 3 and state["rng_restored"] and sched2.last_epoch == 3
    assert (random.random(), np.random.rand()) == draws               # python and numpy generators too
    step(again, opt2, sched2, 3)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
