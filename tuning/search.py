"""Search hyperparameters with Ray Tune; each trial launches the pretraining TorchTrainer.

    bespoke tune --config configs/demo.yaml         # reads runs/<name>/tokens, writes runs/<name>/tune
    bespoke tune --resume runs/<name>/tune          # an interrupted search: unfinished trials finish

`run_tune` writes <out>/search.json (the model, train and tune configs and data paths, which is
all `resume_tune` needs) and Tune's experiment folder <out>/experiment/ (progress.csv,
result.json, TensorBoard events and checkpoints per trial; `tuning/report.py` reads it). Trials run
concurrently as far as the cluster's CPUs allow; a failed trial is recorded with its error and
the others go on. Trials' Train runs live in <out>/trials/<trial>_<start>/.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from modeling.config import ModelConfig
from pipelines.training.config import TrainConfig
from tuning.config import TuneConfig
from tuning.placement import PlacementGroupReaper
from tuning.progress import TuneProgress

EXPERIMENT = "experiment"


@dataclass
class TuneResult:
    best_config: dict          # the best trial's searched parameters {"lr", "batch_size", ...}
    best_metrics: dict         # the best trial's last report
    best_model_dir: str        # its last checkpoint's model folder
    experiment_path: str       # Tune's experiment folder (restore / ExperimentAnalysis read it)
    trials: list[dict]         # one row per trial: config, last metrics, iterations, error



def _absolute(path) -> str:
    """A URL (s3://, gs://: tokens_dir in a bucket) as it is; a local path made absolute."""
    from pipelines.curation import store

    return str(path) if store.is_url(str(path)) else str(Path(path).resolve())

def default_concurrency(tune_cfg: TuneConfig, train_cfg: TrainConfig) -> int:
    """As many trials as the cluster's CPUs fit (each trial's workers hold CPUs; its driver none)."""
    import ray

    if tune_cfg.max_concurrent_trials:
        return tune_cfg.max_concurrent_trials
    per_trial = tune_cfg.workers_per_trial * train_cfg.cpus_per_worker
    return max(1, int(ray.cluster_resources().get("CPU", 1) // per_trial))


def run_tune(tune_cfg: TuneConfig, model_cfg: ModelConfig, train_cfg: TrainConfig, tokens_dir,
             tokenizer_dir, out_dir, progress: Callable[[str], None] = print,
             callbacks: list | None = None, fault_injection: dict | None = None,
             run_config: dict | None = None) -> TuneResult:
    """Run the search (Ray must be initialised) and return the best trial and its model folder.

    run_config (the whole run config as a dict) is kept in search.json so the report can write a
    complete best config; callbacks and fault_injection are for tests.
    """
    from tuning.space import check_against_train

    check_against_train(tune_cfg, train_cfg)
    out_dir = Path(out_dir).resolve()
    spec = {"tune": dataclasses.asdict(tune_cfg), "model": dataclasses.asdict(model_cfg),
            "train": dataclasses.asdict(train_cfg), "tokens_dir": _absolute(tokens_dir),
            "tokenizer_dir": str(Path(tokenizer_dir).resolve()), "run_config": run_config,
            "fault_injection": fault_injection}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search.json").write_text(json.dumps(spec, indent=2, default=str))
    return _fit(spec, out_dir, progress, callbacks, restore=False)


def resume_tune(path, progress: Callable[[str], None] = print, callbacks: list | None = None) -> TuneResult:
    """Resume an interrupted search from its folder (or its experiment/ subfolder)."""
    out_dir = Path(path).resolve()
    if out_dir.name == EXPERIMENT:
        out_dir = out_dir.parent
    spec_path = out_dir / "search.json"
    if not spec_path.is_file() or not (out_dir / EXPERIMENT).is_dir():
        raise FileNotFoundError(f"{path} is not a `bespoke tune` folder (no search.json and {EXPERIMENT}/)")
    return _fit(json.loads(spec_path.read_text()), out_dir, progress, callbacks, restore=True)


def _configs(spec: dict) -> tuple[TuneConfig, ModelConfig, TrainConfig]:
    return TuneConfig(**spec["tune"]), ModelConfig(**spec["model"]), TrainConfig(**spec["train"])


def _fit(spec: dict, out_dir: Path, progress, callbacks, restore: bool) -> TuneResult:
    import ray.tune

    from tuning.space import param_space, scheduler, search_algorithm
    from tuning.trial import make_trial_fn

    tune_cfg, model_cfg, train_cfg = _configs(spec)
    trial_fn = make_trial_fn(model_cfg, train_cfg, tune_cfg, spec["tokens_dir"], spec["tokenizer_dir"],
                             str(out_dir / "trials"), spec.get("fault_injection"))
    # The trial function only waits on its TorchTrainer, whose workers hold the CPUs; it asks for
    # no CPU (Tune needs a non-empty request, so it asks for a little memory instead).
    trainable = ray.tune.with_resources(trial_fn, {"CPU": 0, "memory": 256 * 1024**2})
    if restore:
        progress(f"tune: resuming {out_dir / EXPERIMENT}: unfinished trials continue from their checkpoints")
        tuner = ray.tune.Tuner.restore(str(out_dir / EXPERIMENT), trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
    else:
        concurrency = default_concurrency(tune_cfg, train_cfg)
        progress(f"tune: {tune_cfg.search} search, {tune_cfg.scheduler} scheduler, "
                 f"{'all grid points' if tune_cfg.search == 'grid' else f'{tune_cfg.num_samples} trials'} x "
                 f"{tune_cfg.max_steps} steps, up to {concurrency} at a time")
        tuner = ray.tune.Tuner(
            trainable, param_space=param_space(tune_cfg),
            tune_config=ray.tune.TuneConfig(
                metric=tune_cfg.metric, mode="min", scheduler=scheduler(tune_cfg),
                num_samples=1 if tune_cfg.search == "grid" else tune_cfg.num_samples,
                search_alg=search_algorithm(tune_cfg, concurrency),
                # A reused trial actor keeps a stopped trial's TorchTrainer (and its CPUs) alive.
                reuse_actors=False),
            run_config=ray.tune.RunConfig(
                name=EXPERIMENT, storage_path=str(out_dir), verbose=0,
                callbacks=[TuneProgress(progress, tune_cfg.max_steps, tune_cfg.metric), PlacementGroupReaper(),
                           *(callbacks or [])],
                # Tune keeps the latest checkpoint (HyperBand and --resume start from it; the
                # best model stays in the trial's Train run folder). PBT keeps them all: a
                # recipient restores the donor's checkpoint of the decision, which the donor
                # would otherwise delete on its next report before the recipient restarts.
                checkpoint_config=ray.tune.CheckpointConfig(
                    num_to_keep=None if tune_cfg.scheduler == "pbt" else 1)))
    grid = tuner.fit()
    return summarise(grid, tune_cfg.metric)


def summarise(grid, metric: str) -> TuneResult:
    """Best trial by its last reported metric, and one summary row per trial (failed ones included)."""
    trials = []
    for result in grid:
        m = result.metrics or {}
        # Tune's copy of the last checkpoint (it keeps the latest; Train's own copy may be pruned).
        checkpoint = result.checkpoint.path if result.checkpoint else m.get("checkpoint_path")
        trials.append({"trial": m.get("trial_id") or Path(result.path).name, **result.config,
                       metric: m.get(metric), "loss": m.get("loss"), "step": m.get("step"),
                       "effective_lr": m.get("lr_peak"), "iterations": m.get("training_iteration"),
                       "tokens_per_s": m.get("tokens_per_s"), "checkpoint_path": checkpoint,
                       "error": _error_line(result.error) if result.error else None, "path": result.path})
    finished = [t for t in trials if t[metric] is not None and t["checkpoint_path"]]
    if not finished:
        raise RuntimeError(f"no Tune trial reported {metric}; errors: {[t['error'] for t in trials]}")
    best = min(finished, key=lambda t: t[metric])
    params = [k for k in ("lr", "batch_size", "warmup_steps", "weight_decay") if k in best]
    return TuneResult(best_config={k: best[k] for k in params}, best_metrics=best,
                      best_model_dir=str(Path(best["checkpoint_path"]) / "model"),
                      experiment_path=grid.experiment_path,
                      trials=sorted(trials, key=lambda t: (t[metric] is None, t[metric] or 0.0)))


def _error_line(error: BaseException) -> str:
    """The trial's exception in one line (Tune wraps it; the text holds the root traceback)."""
    from tuning.report import error_summary

    return error_summary(f"{type(error).__name__}: {error}")
