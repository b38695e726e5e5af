"""End to end: `bespoke run` on the tiny config (demo corpus slice, tiny model, 2-trial search).

Checks that every stage leaves its artifacts and that the numbers are sane: curation counts add
up, the loss goes down and ends below the unigram baseline, Tune ran every trial, evaluation and
generation produced results, and the report points at all of it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipelines.run import run_lifecycle
from pipelines.run_config import load_run_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(ray_session, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_run_config(REPO / "configs" / "tiny.yaml", [f"runs_dir={runs}"])
    summary = run_lifecycle(cfg, progress=print)
    return cfg.paths.root, summary


@pytest.mark.slow
def test_curation_counts_add_up(tiny_run):
    root, _ = tiny_run
    report = json.loads((root / "curated" / "report.json").read_text())
    assert report["input_docs"] == report["kept_docs"] + report["dropped_docs"] + report["errored_docs"]
    assert report["kept_docs"] == report["train_docs"] + report["val_docs"]
    assert report["train_docs"] > 0 and report["val_docs"] > 0
    dropped = " ".join(report["dropped"])
    assert "exact_dedup" in dropped and "quality" in dropped          # the planted junk and copies went
    assert sum(report["pii_replacements"].values()) > 0
    assert list((root / "curated" / "train").glob("*.parquet"))


@pytest.mark.slow
def test_training_learns_below_the_unigram_baseline(tiny_run):
    root, summary = tiny_run
    meta = json.loads((root / "tokens" / "meta.json").read_text())
    assert (root / "tokenizer" / "tokenizer.json").is_file()
    assert summary["pretrain_val_loss"] < meta["unigram_val_loss"] - 0.2
    train = json.loads((root / "train" / "result.json").read_text())
    history = [json.loads(line) for line in open(train["history_path"])]
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(h["tokens_per_s"] > 0 for h in history)
    assert list(Path(train["run_path"], "logs").glob("events.out.tfevents.*"))   # TensorBoard


@pytest.mark.slow
def test_tune_ran_every_trial_with_asha(tiny_run):
    root, _ = tiny_run
    tune = json.loads((root / "tune" / "result.json").read_text())
    assert len(tune["trials"]) == 2
    assert all(t["error"] is None for t in tune["trials"])
    assert Path(tune["best_model_dir"], "model.safetensors").is_file()
    assert (root / "tune" / "report.md").is_file() and (root / "tune" / "val_loss_curves.png").is_file()
    assert (root / "tune" / "best.yaml").is_file()


@pytest.mark.slow
def test_eval_generate_and_report(tiny_run):
    root, _ = tiny_run
    results = json.loads((root / "eval" / "results.json").read_text())
    assert math.isclose(results["perplexity"], math.exp(results["val_loss"]), rel_tol=1e-6)
    cloze = results["tasks"]["bespoke_cloze"]
    assert 0.0 <= cloze["acc"] <= 1.0 and cloze["n"] > 0
    samples = json.loads((root / "generate" / "samples.json").read_text())["samples"]
    assert samples and all(s["new_tokens"] > 0 for s in samples)
    report = (root / "report.md").read_text()
    for needle in ("Curation", "Pretraining", "unigram baseline", "Tune", "Evaluation", "Samples", "loss_curve.png"):
        assert needle in report
    png = (root / "loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
