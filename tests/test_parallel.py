"""Parallel training modes against a single process (pytorch#162338 guard), and their config checks.

Every mode (DDP, FSDP2, TP with and without sequence parallel, activation checkpointing, compile, PP with
GPipe and 1F1B, 2-D FSDP x TP, PP x FSDP) runs inside real Ray Train workers on CPU with gloo;
each worker also trains the plain model on the whole batch, and the loss, every gradient, the
clipped gradient norm and the loss after one AdamW step must agree within 1e-5.

    timeout 900 python -m pytest -q tests/test_parallel.py
"""
from __future__ import annotations

import dataclasses

import pytest

from modeling.config import ModelConfig
from pipelines.training.config import TrainConfig
from pipelines.training.parallel.config import ParallelConfig

# GQA (4 query heads, 2 key/value heads) so a TP rank holds 2 query heads and 1 key/value head.
TIED = ModelConfig(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
UNTIED = dataclasses.replace(TIED, tie_embeddings=False)     # pipeline stages cannot share the embedding
TOL = 1e-5


def _run(ray_session, tmp_path, groups: list, num_workers: int, cpus: float) -> dict:
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.training.parallel.equivalence import train_loop_compare

    trainer = TorchTrainer(
        train_loop_compare,
        train_loop_config={"groups": groups, "threads": 1, "out": str(tmp_path / "diffs.json")},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=f"parallel-equivalence-{num_workers}", storage_path=str(tmp_path)))
    result = trainer.fit()
    if result.error:
        raise result.error
    return json.loads((tmp_path / "diffs.json").read_text())


def _check(metrics: dict, mode: str, n_grads: int) -> None:
    for quantity in ("loss", "grad", "grad_norm", "loss_after_step"):
        assert metrics[f"{mode}/{quantity}"] <= TOL, (mode, quantity, metrics[f"{mode}/{quantity}"])
    assert metrics[f"{mode}/n_grads"] == n_grads, mode          # every parameter's gradient was compared


def _n_params(cfg: ModelConfig) -> int:
    from modeling.encoder_decoder import build_model

    return len(list(build_model(cfg).parameters()))


def test_every_mode_on_two_workers_matches_a_single_process(ray_session, tmp_path):
    modes = [["ddp", "ddp", {}], ["fsdp", "fsdp", {}],
             ["ddp_ac", "ddp", {"activation_checkpointing": True}],
             ["fsdp_ac", "fsdp", {"activation_checkpointing": True}],
             # compile per block and of the loss: inductor's fused kernels sum in another order
             ["fsdp_ac_compile", "fsdp", {"activation_checkpointing": True, "compile": True}],
             ["tp", "fsdp", {"tp_size": 2}],
             ["tp_no_sp", "fsdp", {"tp_size": 2, "sequence_parallel": False}]]
    pipeline = [["pp_gpipe", "fsdp", {"pp_size": 2, "pp_schedule": "gpipe", "pp_microbatches": 2}],
                ["pp_1f1b", "fsdp", {"pp_size": 2, "pp_schedule": "1f1b", "pp_microbatches": 4}]]
    metrics = _run(ray_session, tmp_path, [{"model": dataclasses.asdict(TIED), "modes": modes},
                                 {"model": dataclasses.asdict(UNTIED), "modes": pipeline}], 2, 1)
    for mode, *_ in modes:
        _check(metrics, mode, 2 * _n_params(TIED))             # each rank holds (a shard of) every parameter
    for mode, *_ in pipeline:
        _check(metrics, mode, _n_params(UNTIED))               # the two stages hold disjoint parameters


def test_two_dimensional_modes_on_four_workers_match_a_single_process(ray_session, tmp_path):
    """2-D needs 4 ranks: 4 workers at half a CPU each on this 2-core machine."""
    modes = [["fsdp_x_tp", "fsdp", {"tp_size": 2}],
             ["fsdp_x_tp_ac", "fsdp", {"tp_size": 2, "activation_checkpointing": True}]]
    pipeline = [["pp_x_fsdp", "fsdp", {"pp_size": 2, "pp_microbatches": 2}]]
    metrics = _run(ray_session, tmp_path, [{"model": dataclasses.asdict(TIED), "modes": modes},
                                 {"model": dataclasses.asdict(UNTIED), "modes": pipeline}], 4, 0.5)
    for mode, *_ in modes:
        _check(metrics, mode, 4 * _n_params(TIED))
    _check(metrics, "pp_x_fsdp", 2 * _n_params(UNTIED))


@pytest.mark.parametrize("kwargs, model, field", [
    ({"tp_size": 0}, TIED, "tp_size"),
    ({"pp_schedule": "zb"}, TIED, "pp_schedule"),
    ({"tp_size": 2, "pp_size": 2}, TIED, "tp_size"),
    ({"pp_size": 4, "pp_microbatches": 2}, TIED, "pp_microbatches"),
    ({"tp_size": 3}, ModelConfig(d_model=48, n_heads=6, n_kv_heads=2), "train.parallel.tp_size"),   # kv heads
    ({"tp_size": 4}, ModelConfig(d_model=48, n_heads=6), "train.parallel.tp_size"),                 # heads
    ({"pp_size": 3, "pp_microbatches": 3}, dataclasses.replace(UNTIED, n_layers=4), "train.parallel.pp_size"),  # layers
    ({"pp_size": 2}, TIED, "train.parallel.pp_size"),                                                # tied head
    ({"tp_size": 2}, ModelConfig(arch="encoder_decoder", d_model=32, n_heads=4), "train.parallel"),
    ({"tp_size": 2}, ModelConfig(d_model=32, n_heads=4, positions="learned"), "train.parallel.sequence_parallel"),
])
def test_parallel_config_errors_name_the_field(kwargs, model, field):
    with pytest.raises(ValueError) as err:
        ParallelConfig(**kwargs).check_model(model)
    assert str(err.value).startswith(f"{field}:")


@pytest.mark.parametrize("kwargs, field", [
    ({"num_workers": 2, "parallel": ParallelConfig(tp_size=4)}, "num_workers"),
    ({"batch_size": 6, "parallel": ParallelConfig(pp_size=2, pp_microbatches=4)}, "batch_size"),
    ({"num_workers": 4, "parallel": ParallelConfig(tp_size=2)}, "strategy"),              # ddp x TP
    ({"num_workers": 4, "parallel": ParallelConfig(pp_size=2)}, "strategy"),              # ddp x PP
])
def test_train_config_checks_the_world_against_parallel(kwargs, field):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    assert str(err.value).startswith(f"{field}:")
    TrainConfig(**{**kwargs, "strategy": "fsdp", "num_workers": 8, "batch_size": 8})        # fixed: accepted


def test_run_config_reads_the_parallel_section():
    from pipelines.config import ConfigError
    from pipelines.run_config import load_run_config

    cfg = load_run_config(None, ["train.strategy=fsdp", "train.parallel.tp_size=2", "model.n_heads=6"])
    assert cfg.train.parallel == ParallelConfig(tp_size=2)
    with pytest.raises(ConfigError, match=r"^train\.parallel\.pp_schedule"):
        load_run_config(None, ["train.parallel.pp_schedule=zb"])
    with pytest.raises(ConfigError, match=r"^train\.parallel\.tp_size: 4 must divide model\.n_heads"):
        load_run_config(None, ["train.strategy=fsdp", "train.num_workers=4", "train.parallel.tp_size=4"])


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """A tokenizer and train/val token files as the tokenize stage writes them, from stdlib docs."""
    import inspect
    import json
    import textwrap

    import numpy as np

    from modeling.tokenizer import Tokenizer
    from pipelines.tokenize import write_packed_tokens

    root = tmp_path_factory.mktemp("parallel-run")
    text = "\n\n".join(inspect.getdoc(obj) or "" for module in (json, textwrap, inspect, dataclasses)
                       for _, obj in inspect.getmembers(module) if inspect.isfunction(obj) or inspect.isclass(obj))
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=384)
    tok.save(root / "tokenizer")
    ids = np.array(tok.encode(text), dtype=np.uint16)
    split = int(len(ids) * 0.9)
    write_packed_tokens(root / "tokens", tok, ids[:split], ids[split:])
    return root


def test_tensor_and_pipeline_parallel_pretraining_agree_checkpoint_and_resume(ray_session, tokens, tmp_path):
    """Real run_pretrain runs. 2-way TP (+ sequence parallel) and 2 pipeline stages (GPipe) each form
    one data-parallel replica reading the rows a single worker reads, so their losses must agree;
    both learn, their model/ folders hold full unsharded weights, and resuming TP's step-10 DCP
    checkpoint ends where the uninterrupted run ends. (The single-process match of every mode is
    checked step by step in the equivalence tests above; one run pair here keeps the suite short.)"""
    import json
    from pathlib import Path

    from modeling.checkpoint import load_model
    from pipelines.training import run_pretrain

    # GQA for TP (2 key/value heads, one per rank); untied embeddings for PP (stages cannot share).
    model = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, tie_embeddings=False)
    cfg = TrainConfig(seq_len=32, batch_size=8, max_steps=20, warmup_steps=2, eval_every=10, log_every=5,
                      eval_tokens=2048, num_workers=2, strategy="fsdp", parallel=ParallelConfig(tp_size=2))
    args = (tokens / "tokens", tokens / "tokenizer", tmp_path)
    tp = run_pretrain(model, cfg, *args, name="tp")
    pp = run_pretrain(model, dataclasses.replace(cfg, parallel=ParallelConfig(pp_size=2, pp_schedule="gpipe",
                                                                              pp_microbatches=2)), *args, name="pp")
    history = [[json.loads(line) for line in open(r.history_path)] for r in (tp, pp)]
    assert [h["step"] for h in history[0]] == [5, 10, 15, 20] and history[0][-1]["loss"] < history[0][0]["loss"]
    for a, b in zip(*history, strict=True):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)   # norm over TP shards / both stages
    assert pp.metrics["val_loss"] == pytest.approx(tp.metrics["val_loss"], abs=1e-4)
    assert tp.metrics["tokens"] == 20 * 8 * 32              # one data-parallel replica: the TP pair shares rows

    for result in (tp, pp):
        plain, _ = load_model(result.model_dir)              # strict load: full shapes, every weight
        assert len(plain.layers) == 2 and plain.tok_emb.weight.shape == (plain.cfg.vocab_size, 64)
        assert plain.layers[0].attn.wk.weight.shape == (2 * 16, 64)   # both ranks' key/value heads

    step10 = next(p.parent for p in Path(tp.run_path).glob("checkpoint_*/state.json")
                  if json.loads(p.read_text())["step"] == 10)
    resumed = run_pretrain(model, dataclasses.replace(cfg, resume_from=str(step10)), *args, name="tp-resumed")
    assert [json.loads(line)["step"] for line in open(resumed.history_path)] == [15, 20]
    assert resumed.metrics["loss"] == pytest.approx(tp.metrics["loss"], abs=1e-4)
    assert resumed.metrics["val_loss"] == pytest.approx(tp.metrics["val_loss"], abs=1e-4)


@pytest.mark.parametrize("device,fsdp_casts,mixed_precision,expected", [
    ("cuda", False, True, "bfloat16"),     # one GPU or DDP: autocast, else the step runs in fp32
    ("cuda", True, True, None),            # FSDP2's MixedPrecisionPolicy already computes in bf16
    ("cuda", False, False, None),          # mixed_precision: false keeps fp32
    ("cpu", False, True, None),            # CPU trains in fp32 (bf16 matmuls run slower there)
])
def test_gpu_compute_runs_in_bf16_exactly_once(device, fsdp_casts, mixed_precision, expected):
    import torch

    from pipelines.training.parallelize import _compute_settings

    settings = _compute_settings(ParallelConfig(mixed_precision=mixed_precision), torch.device(device),
                                 fsdp_casts)
    assert settings["autocast_dtype"] == (getattr(torch, expected) if expected else None)


def test_compile_also_compiles_the_loss_and_keeps_its_value():
    import torch

    from modeling.transformer import lm_loss
    from pipelines.training.parallelize import _compute_settings

    assert _compute_settings(ParallelConfig(), torch.device("cpu"), False)["loss_fn"] is lm_loss
    compiled = _compute_settings(ParallelConfig(compile=True), torch.device("cpu"), False)["loss_fn"]
    logits, targets = torch.randn(2, 8, 96), torch.randint(0, 96, (2, 8))
    targets[0, :3] = -100                                  # masked positions (instruction data) stay ignored
    assert compiled is not lm_loss
    assert float(compiled(logits, targets)) == pytest.approx(float(lm_loss(logits, targets)), abs=1e-5)
