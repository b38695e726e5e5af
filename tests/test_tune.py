"""Hyperparameter search (tuning/): the search space, ASHA stopping trials without leaking their Ray
Train placement groups, a failing trial, the report and best config, resume after an interruption,
and PBT restarting a trial from its donor's checkpoint. Tiny model, few steps, 1-2 trials at a time.

    timeout 1500 python -m pytest -q tests/test_tune.py
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from ray.tune import Callback

from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from pipelines.tokenize import write_packed_tokens
from pipelines.run_config import RunConfig, load_run_config
from pipelines.training.config import TrainConfig
from pipelines.training.schedule import lr_at
from tuning.config import TuneConfig
from tuning.space import check_against_train, effective_lr, grid_lrs, param_space, trial_train_config

MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=32)
TRAIN = TrainConfig(seq_len=32, batch_size=8, max_steps=100, warmup_steps=10, eval_tokens=2048,
                    num_workers=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A real tokens/ folder as the tokenize stage writes it, from this repository's Python sources."""
    root = tmp_path_factory.mktemp("tune_data")
    repo = Path(__file__).resolve().parent.parent
    text = "\n\n".join(p.read_text() for p in sorted((repo / "pipelines").rglob("*.py")))[:400_000]
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=300)
    tok.save(root / "tokenizer")
    ids = np.array(tok.encode(text), dtype=np.uint16)
    split = int(len(ids) * 0.9)
    write_packed_tokens(root / "tokens", tok, ids[:split], ids[split:])
    return root


def test_space_lr_scaling_tokens_per_step_and_bad_configs():
    cfg = TuneConfig(search="grid", scheduler="fifo", grid_points=3, lr_min=1e-3, lr_max=1e-1, batch_sizes=[4, 16],
                     warmup_steps=[2, 4], max_steps=20, eval_every=5)
    assert grid_lrs(cfg) == pytest.approx([1e-3, 1e-2, 1e-1])
    space = param_space(cfg)
    assert space["batch_size"] == {"grid_search": [4, 16]} and space["warmup_steps"] == {"grid_search": [2, 4]}
    # With ASHA (the default scheduler) the grid starts in a seeded shuffled order, never ascending lr.
    asha_cfg = dataclasses.replace(cfg, scheduler="asha", grid_points=6)
    asha = param_space(asha_cfg)
    assert sorted(asha["lr"]["grid_search"]) == grid_lrs(asha_cfg)
    assert asha["lr"]["grid_search"] != sorted(asha["lr"]["grid_search"])
    assert asha["lr"] == param_space(asha_cfg)["lr"]                    # seeded
    assert "weight_decay" not in space
    # scale_lr: the searched lr is the lr at train.batch_size (8); sqrt rule by default, linear on request.
    assert effective_lr(cfg, TRAIN, 1e-3, 32) == pytest.approx(2e-3)
    assert effective_lr(dataclasses.replace(cfg, lr_scaling="linear"), TRAIN, 1e-3, 32) == pytest.approx(4e-3)
    trial = trial_train_config(TRAIN, cfg, {"lr": 1e-3, "batch_size": 32, "warmup_steps": 4})
    assert (trial.lr, trial.batch_size, trial.grad_accum, trial.warmup_steps) == (pytest.approx(2e-3), 32, 1, 4)
    assert (trial.max_steps, trial.eval_every, trial.max_failures) == (20, 5, 0)
    # keep_tokens: lr as sampled, grad_accum keeps 8 rows per step.
    keep = dataclasses.replace(cfg, batch_rule="keep_tokens", batch_sizes=[2, 4, 8])
    trial = trial_train_config(TRAIN, keep, {"lr": 1e-3, "batch_size": 2})
    assert (trial.lr, trial.batch_size * trial.grad_accum) == (1e-3, 8)
    with pytest.raises(ValueError, match="tune.batch_sizes: keep_tokens"):
        check_against_train(dataclasses.replace(keep, batch_sizes=[3]), TRAIN)
    with pytest.raises(ValueError, match="tune.warmup_steps"):
        check_against_train(dataclasses.replace(cfg, warmup_steps=[20]), TRAIN)
    for bad, field in [({"search": "bayes"}, "search"), ({"scheduler": "median"}, "scheduler"),
                       ({"lr_min": 0.1, "lr_max": 0.01}, "lr_min"), ({"lr_scaling": "cubic"}, "lr_scaling"),
                       ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
                       ({"search": "grid", "scheduler": "pbt"}, "scheduler")]:
        with pytest.raises(ValueError, match=f"^{field}:"):
            TuneConfig(**bad)


def _reserved() -> set[str]:
    """Ids of the placement groups that still reserve resources."""
    from tuning.placement import reserved_placement_groups

    return {pg["placement_group_id"] for pg in reserved_placement_groups()}


def test_reaper_frees_the_recorded_placement_group_of_an_ended_trial_only(ray_session):
    """The leak's fix on its own: a group recorded for a trial is removed once the trial is no
    longer running, whatever Ray Train's own (state-API based) cleaner manages to do."""
    from types import SimpleNamespace

    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    from tuning.placement import PlacementGroupReaper, RecordPlacementGroup

    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=300)
    group = SimpleNamespace(get_worker_group_state=lambda: SimpleNamespace(
        placement_group_handle=SimpleNamespace(placement_group=pg)))
    RecordPlacementGroup("t-ended").after_worker_group_start(group)   # as the trial's controller does
    reaper = PlacementGroupReaper(check_every_s=0)
    reaper.on_step_end(0, [SimpleNamespace(trial_id="t-ended", status="RUNNING")])
    assert placement_group_table(pg)["state"] == "CREATED"             # a running trial keeps its CPUs
    reaper.on_step_end(1, [SimpleNamespace(trial_id="t-ended", status="TERMINATED")])
    assert placement_group_table(pg)["state"] == "REMOVED" and reaper.removed == 1
    reaper.on_trial_complete(2, [], SimpleNamespace(trial_id="t-ended"))  # forgotten once removed
    assert reaper.removed == 1


@pytest.fixture(scope="module")
def asha_search(ray_session, data, tmp_path_factory):
    """Optuna TPE + ASHA over 7 trials, 2 at a time; batch size 4 is killed at step 3 (like an OOM)."""
    from tuning.search import run_tune

    out = tmp_path_factory.mktemp("asha") / "tune"
    cfg = TuneConfig(search="optuna", scheduler="asha", num_samples=7, lr_min=1e-4, lr_max=3e-2,
                     batch_sizes=[4, 8, 16], max_steps=16, eval_every=4, grace_period=1,
                     reduction_factor=2, max_concurrent_trials=2)
    run_config = dataclasses.asdict(RunConfig(model=MODEL, train=TRAIN, tune=cfg))
    before = _reserved()     # other tests' groups, if any: only the search's own must be gone
    result = run_tune(cfg, MODEL, TRAIN, data / "tokens", data / "tokenizer", out, print,
                      fault_injection={"batch_size": 4, "step": 3}, run_config=run_config)
    return cfg, out, result, _reserved() - before


def test_asha_stops_trials_frees_their_placement_groups_and_a_failed_trial_does_not_stop_the_search(asha_search):
    cfg, out, result, left_reserved = asha_search
    trials = result.trials
    assert len(trials) == 7                                           # the search ran to the end
    failed = [t for t in trials if t["error"]]
    assert failed and all(t["batch_size"] == 4 for t in failed)       # reported with the root cause
    assert all("WorkerGroupError" in t["error"] and "died" in t["error"] for t in failed), failed
    ok = [t for t in trials if not t["error"]]
    assert ok and all(t["val_loss"] is not None for t in ok)
    stopped = [t for t in ok if t["step"] < cfg.max_steps]
    assert stopped, [(t["lr"], t["batch_size"], t["step"]) for t in ok]   # ASHA really stopped some
    assert any(t["step"] == cfg.max_steps for t in ok)
    assert result.best_metrics["val_loss"] == min(t["val_loss"] for t in ok)
    # No placement group is left reserving CPUs (Train's or Tune's) once the search returns.
    assert left_reserved == set()
    # Tune's own storage per trial: progress.csv, result.json, TensorBoard events, a checkpoint.
    for t in ok:
        folder = Path(t["path"])
        assert (folder / "progress.csv").is_file() and (folder / "result.json").is_file()
        assert list(folder.glob("events.out.tfevents.*"))
        assert list(folder.glob("checkpoint_*/model/model.safetensors"))


def test_tune_report_writes_plots_and_a_best_config_pretrain_loads(asha_search, tmp_path, capsys):
    from pipelines.cli import main

    cfg, out, result, _ = asha_search
    assert main(["tune-report", str(out / "experiment")]) == 0
    printed = capsys.readouterr().out
    for name in ("report.md", "val_loss_curves.png", "val_loss_vs_lr.png", "val_loss_vs_batch_size.png", "trials.csv"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "failed:" in report and "stopped early" in report and "finished" in report
    assert report.count("![") == 3
    best = load_run_config(out / "best.yaml")                         # `bespoke pretrain --config best.yaml`
    winner = result.best_metrics
    assert best.train.batch_size == winner["batch_size"]
    assert best.train.lr == pytest.approx(effective_lr(cfg, TRAIN, winner["lr"], winner["batch_size"]), rel=1e-4)
    assert best.train.max_steps == TRAIN.max_steps and best.model == MODEL   # the rest of the run config
    snippet = printed[printed.index("train:"):printed.index("{")]     # the snippet, before the JSON summary
    (tmp_path / "snippet.yaml").write_text(snippet)
    assert load_run_config(tmp_path / "snippet.yaml").train.lr == pytest.approx(best.train.lr)
    with open(out / "trials.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 7


class _InterruptAtFirstCheckpointOf(Callback):
    """Interrupt the experiment (as Ctrl+C does, via SIGUSR1) once trial #n's first checkpoint is
    registered; a marker file keeps the restored copy of this callback from firing again."""

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.marker = n, marker

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if trials.index(trial) == self.n and not os.path.exists(self.marker):
            Path(self.marker).write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def _train_runs(out: Path) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {}
    for folder in sorted((out / "trials").iterdir()):
        if folder.is_dir():
            runs.setdefault(folder.name.rsplit("_", 1)[0], []).append(folder.name)
    return runs


@pytest.mark.slow
def test_interrupted_search_resumes_unfinished_trials_from_their_checkpoint(ray_session, data, tmp_path):
    from tuning.search import run_tune

    out = tmp_path / "tune"
    cfg = TuneConfig(search="grid", scheduler="fifo", grid_points=2, lr_min=1e-3, lr_max=1e-2,
                     batch_sizes=[8], max_steps=12, eval_every=4, max_concurrent_trials=1)
    marker = tmp_path / "interrupted"
    before = _reserved()
    first = run_tune(cfg, MODEL, TRAIN, data / "tokens", data / "tokenizer", out, print,
                     callbacks=[_InterruptAtFirstCheckpointOf(1, str(marker))])
    interrupted_id = marker.read_text()
    by_id = {t["trial"]: t for t in first.trials}
    assert 4 <= by_id[interrupted_id]["step"] < cfg.max_steps          # cut short
    done_before = {t["trial"] for t in first.trials if t["step"] == cfg.max_steps}
    assert len(done_before) == 1
    runs_before = _train_runs(out)

    from pipelines.cli import main

    assert main(["tune", "--resume", str(out)]) == 0                   # `bespoke tune --resume PATH`
    resumed = json.loads((out / "result.json").read_text())
    assert len(resumed["trials"]) == 2 and all(t["step"] == cfg.max_steps for t in resumed["trials"])
    assert _reserved() - before == set()
    runs_after = _train_runs(out)
    done_id = done_before.pop()
    (finished,) = [name for name in runs_after if done_id in name]
    assert runs_after[finished] == runs_before[finished]               # a finished trial is not repeated
    restarted = [runs for name, runs in runs_after.items() if interrupted_id in name][0]
    assert len(restarted) == 2                                         # one more Train run for it...
    history = [json.loads(line) for line in open(out / "trials" / restarted[1] / "logs" / "history.jsonl")]
    assert history[0]["step"] > 4                                      # ...starting after its checkpoint


@pytest.mark.slow
def test_pbt_restarts_a_trial_from_its_donors_checkpoint(ray_session, data, tmp_path):
    from tuning.search import run_tune

    out = tmp_path / "tune"
    # Synchronous PBT: at the decision (report 2 of 3) the worse trial restarts from the better one.
    cfg = TuneConfig(search="random", scheduler="pbt", num_samples=2, lr_min=1e-4, lr_max=3e-2,
                     batch_sizes=[8], max_steps=12, eval_every=4, perturbation_interval=2,
                     max_concurrent_trials=2, seed=3)
    before = _reserved()
    result = run_tune(cfg, MODEL, TRAIN, data / "tokens", data / "tokenizer", out, print)
    assert all(t["step"] == cfg.max_steps and not t["error"] for t in result.trials)
    assert _reserved() - before == set()
    restarts = [runs for runs in _train_runs(out).values() if len(runs) > 1]
    assert restarts, _train_runs(out)                                  # PBT exploited at least once
    history = [json.loads(line) for line in open(out / "trials" / restarts[0][1] / "logs" / "history.jsonl")]
    assert history[0]["step"] > cfg.eval_every                          # it started from a checkpoint...
    params = json.loads((out / "trials" / restarts[0][1] / "params.json").read_text())
    trained = trial_train_config(TRAIN, cfg, params)                   # ...at its own (perturbed) lr
    assert history[0]["lr"] == pytest.approx(lr_at(history[0]["step"] - 1, trained), rel=0.05)
