"""End to end: `bespoke run` on the tiny config (demo corpus slice, tiny model, 2-trial search).

    python -m pytest tests/test_lifecycle.py -q          # one full run, ~4-8 min on 2 cores

The run is the command a user types, in its own process (its own embedded Ray, RAY_AUTH_MODE
disabled, a temporary runs_dir). Checks that every stage leaves its artifacts and that the
numbers are sane: curation counts add up, the loss goes down and ends below the unigram baseline,
Tune ran every trial, evaluation and generation produced results, and the report points at all of
it; and that what it printed (stdout and stderr) has no traceback and no warning, and shows
progress with rate and ETA for every long phase.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Ray's C++ components log errors as "[2026-12-03 12:43:58,113 E 24929 24929] core_worker.cc:..."
RAY_ERROR_LINE = re.compile(r"\d\d:\d\d:\d\d,\d{3} E \d+ \d+\]")


def _bespoke() -> list[str]:
    script = Path(sys.executable).parent / "bespoke"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(run folder, everything the run printed on stdout and stderr)."""
    runs = tmp_path_factory.mktemp("runs")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "BESPOKE_LOG_LEVEL")}
    env["RAY_AUTH_MODE"] = "disabled"
    out = subprocess.run(_bespoke() + ["run", "--config", "configs/tiny.yaml", "--set", f"runs_dir={runs}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-5000:]
    return runs / "tiny", printed


@pytest.mark.slow
def test_a_successful_run_prints_no_traceback_or_warning(tiny_run):
    _, printed = tiny_run
    bad = [line for line in printed.splitlines()
           if "WARNING" in line or "Traceback" in line or RAY_ERROR_LINE.search(line)]
    assert not bad, "\n".join(bad[:20])


@pytest.mark.slow
def test_every_long_phase_shows_progress_with_rate_and_eta(tiny_run):
    _, printed = tiny_run
    for label in ("curate: parts", "tokenize: shards", "tune: trial", "tune: search", "evaluate: jobs"):
        lines = [line for line in printed.splitlines() if f"] {label} " in line and "/s, " in line]
        assert lines, f"no progress line for {label}"
        assert all("ETA" in line or "done in" in line for line in lines), lines
    assert any("best val_loss" in line for line in printed.splitlines() if "tune: search" in line)


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
    pictures = ["drop_reasons.png", "funnel.png", "languages.png", "lengths.png", "pii.png"]
    assert report["figures"] == pictures
    curated_md = (root / "curated" / "report.md").read_text()
    assert all(f"]({name})" in curated_md and (root / "curated" / name).is_file() for name in pictures)


@pytest.mark.slow
def test_training_learns_below_the_unigram_baseline(tiny_run):
    root, _ = tiny_run
    meta = json.loads((root / "tokens" / "meta.json").read_text())
    assert (root / "tokenizer" / "tokenizer.json").is_file()
    train = json.loads((root / "train" / "result.json").read_text())
    assert train["metrics"]["val_loss"] < meta["unigram_val_loss"] - 0.2
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
