"""Search learning rate and batch size with Ray Tune and ASHA; each trial launches the training stage.

    bespoke tune --config configs/demo.yaml         # reads runs/<name>/tokens, writes runs/<name>/tune

A trial is a small driver function: it builds the same `TorchTrainer` that `bespoke pretrain` uses
(with the trial's hyperparameters, its own run name, and `TuneReportCallback`, which forwards every
rank-0 report and its checkpoint path to Tune). ASHA stops trials whose validation loss lags at each
rung. Tune writes progress.csv, result.json and TensorBoard events per trial; `report.py` reads them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ray.tune import Callback

from modeling.config import ModelConfig
from pipelines.training.config import TrainConfig
from pipelines.training.trainer import build_trainer
from tuning.config import TuneConfig


@dataclass
class TuneResult:
    best_config: dict          # {"lr": ..., "batch_size": ...}
    best_metrics: dict         # the best trial's last report
    best_model_dir: str        # its last checkpoint's model folder
    experiment_path: str       # Tune's experiment folder (restore / ExperimentAnalysis read it)
    trials: list[dict]         # one row per trial: config, last metrics, iterations, status


def _trial_train_config(base: TrainConfig, tune_cfg: TuneConfig, params: dict) -> TrainConfig:
    """The pretraining config with the trial's hyperparameters and the search's step budget."""
    return dataclasses.replace(
        base, lr=params["lr"], batch_size=params["batch_size"], max_steps=tune_cfg.max_steps,
        eval_every=tune_cfg.eval_every, warmup_steps=min(base.warmup_steps, tune_cfg.max_steps // 5),
        log_every=tune_cfg.eval_every, num_workers=tune_cfg.workers_per_trial, max_failures=0)


def _make_trial_fn(model_cfg: ModelConfig, train_cfg: TrainConfig, tune_cfg: TuneConfig,
                   tokens_dir: str, tokenizer_dir: str, trials_dir: str) -> Callable[[dict], None]:
    def trial(params: dict) -> None:
        import ray.tune
        from ray.tune.integration.ray_train import TuneReportCallback

        cfg = _trial_train_config(train_cfg, tune_cfg, params)
        # A unique Train run name per trial: reusing a name would resume the old run.
        name = ray.tune.get_context().get_trial_name()
        trainer = build_trainer(model_cfg, cfg, tokens_dir, tokenizer_dir, trials_dir, name,
                                callbacks=[TuneReportCallback()])
        trainer.fit()

    return trial


class _TuneProgress(Callback):
    """One line per trial result and per finished trial, through the caller's progress function."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress, self.finished = progress, 0

    # Tune pickles callbacks into its experiment state; the progress function need not travel.
    def __getstate__(self) -> dict:
        return {"finished": self.finished}

    def __setstate__(self, state: dict) -> None:
        self.progress, self.finished = print, state["finished"]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress(f"tune: trial {trial.trial_id} lr={trial.config['lr']:.3g} bs={trial.config['batch_size']} "
                      f"step {result.get('step')} val_loss {result.get('val_loss', float('nan')):.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished += 1
        self.progress(f"tune: trial {trial.trial_id} finished ({self.finished}/{len(trials)} done)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress(f"tune: trial {trial.trial_id} failed: {trial.error_file}")


def run_tune(tune_cfg: TuneConfig, model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir,
             tokenizer_dir, out_dir, progress: Callable[[str], None] = print) -> TuneResult:
    """Run the search (Ray must be initialised) and return the best trial and its model folder."""
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler

    out_dir = Path(out_dir).resolve()
    trials_dir = out_dir / "trials"
    trial_fn = _make_trial_fn(model_cfg, train_cfg, tune_cfg, str(Path(tokens_dir).resolve()),
                              str(Path(tokenizer_dir).resolve()), str(trials_dir))
    # The driver function only waits on its TorchTrainer, whose workers hold the CPUs; it asks for
    # no CPU (Tune needs a non-empty request, so it asks for a little memory instead).
    trainable = ray.tune.with_resources(trial_fn, {"CPU": 0, "memory": 256 * 1024**2})
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=tune_cfg.max_steps // tune_cfg.eval_every,
                              grace_period=tune_cfg.grace_period, reduction_factor=tune_cfg.reduction_factor)
    param_space = {"lr": ray.tune.loguniform(tune_cfg.lr_min, tune_cfg.lr_max),
                   "batch_size": ray.tune.choice(list(tune_cfg.batch_sizes))}
    progress(f"tune: {tune_cfg.num_samples} trials x {tune_cfg.max_steps} steps, ASHA on {tune_cfg.metric}")
    tuner = ray.tune.Tuner(
        trainable, param_space=param_space,
        tune_config=ray.tune.TuneConfig(
            metric=tune_cfg.metric, mode="min", scheduler=scheduler, num_samples=tune_cfg.num_samples,
            # A reused trial actor keeps a stopped trial's TorchTrainer (and its CPUs) alive, and
            # later trials then wait forever for workers: give every trial a fresh actor.
            reuse_actors=False,
            # The generator caps concurrency itself (Tune ignores max_concurrent_trials for it).
            search_alg=ray.tune.search.BasicVariantGenerator(
                random_state=tune_cfg.seed, max_concurrent=tune_cfg.max_concurrent_trials)),
        run_config=ray.tune.RunConfig(name="experiment", storage_path=str(out_dir), verbose=0,
                                      callbacks=[_TuneProgress(progress)]))
    grid = tuner.fit()
    return summarise(grid, tune_cfg.metric)


def summarise(grid, metric: str) -> TuneResult:
    """Best trial by its last reported metric, and one summary row per trial."""
    trials = []
    for result in grid:
        m = result.metrics or {}
        trials.append({"trial": m.get("trial_id"), "lr": result.config["lr"],
                       "batch_size": result.config["batch_size"], metric: m.get(metric),
                       "loss": m.get("loss"), "step": m.get("step"),
                       "iterations": m.get("training_iteration"), "tokens_per_s": m.get("tokens_per_s"),
                       "checkpoint_path": m.get("checkpoint_path"), "error": repr(result.error) if result.error else None,
                       "path": result.path})
    finished = [t for t in trials if t[metric] is not None and t["checkpoint_path"]]
    if not finished:
        raise RuntimeError(f"no Tune trial reported {metric}; errors: {[t['error'] for t in trials]}")
    best = min(finished, key=lambda t: t[metric])
    return TuneResult(best_config={"lr": best["lr"], "batch_size": best["batch_size"]},
                      best_metrics=best, best_model_dir=str(Path(best["checkpoint_path"]) / "model"),
                      experiment_path=grid.experiment_path, trials=sorted(trials, key=lambda t: t[metric] or 1e9))
