"""What a search explores and how: the parameter space, the search algorithm, the scheduler, and
the training config each trial's hyperparameters turn into.

    space = param_space(tune_cfg)                     # {"lr": loguniform, "batch_size": choice, ...}
    cfg = trial_train_config(train_cfg, tune_cfg, {"lr": 3e-3, "batch_size": 32})

A trial's `lr` is the learning rate at the configured `train.batch_size`. With batch_rule
`scale_lr` a trial at another batch size trains at lr * (batch / train.batch_size) ** k, k = 1/2
(`sqrt`, the rule for Adam: Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive
Gradient Algorithms") or 1 (`linear`, Goyal et al. 2017). With `keep_tokens` the batch size is the
micro-batch and grad_accum keeps train.batch_size * train.grad_accum rows per optimizer step.
"""
from __future__ import annotations

import dataclasses
import math

from pipelines.training.config import TrainConfig
from tuning.config import TuneConfig


def check_against_train(tune_cfg: TuneConfig, train_cfg: TrainConfig) -> None:
    """Cross-section checks (the sections validate themselves alone)."""
    rows = train_cfg.batch_size * train_cfg.grad_accum
    if tune_cfg.batch_rule == "keep_tokens":
        bad = [b for b in tune_cfg.batch_sizes if rows % b]
        if bad:
            raise ValueError(f"tune.batch_sizes: keep_tokens needs sizes dividing train.batch_size * "
                             f"train.grad_accum = {rows}, got {bad}")
    too_long = [w for w in tune_cfg.warmup_steps if w >= tune_cfg.max_steps]
    if too_long:
        raise ValueError(f"tune.warmup_steps: must be < tune.max_steps={tune_cfg.max_steps}, got {too_long}")


def grid_lrs(tune_cfg: TuneConfig) -> list[float]:
    """grid_points learning rates spaced evenly in log between lr_min and lr_max."""
    n = tune_cfg.grid_points
    if n == 1:
        return [math.sqrt(tune_cfg.lr_min * tune_cfg.lr_max)]
    step = math.log(tune_cfg.lr_max / tune_cfg.lr_min) / (n - 1)
    return [float(f"{tune_cfg.lr_min * math.exp(i * step):.6g}") for i in range(n)]


def param_space(tune_cfg: TuneConfig) -> dict:
    """Tune's param_space: grid_search lists for `grid`, distributions otherwise."""
    import ray.tune

    if tune_cfg.search == "grid":
        space = {"lr": ray.tune.grid_search(_grid_order(grid_lrs(tune_cfg), tune_cfg)),
                 "batch_size": ray.tune.grid_search(_grid_order(list(tune_cfg.batch_sizes), tune_cfg))}
        pick = ray.tune.grid_search
    else:
        space = {"lr": ray.tune.loguniform(tune_cfg.lr_min, tune_cfg.lr_max),
                 "batch_size": ray.tune.choice(list(tune_cfg.batch_sizes))}
        pick = ray.tune.choice
    if tune_cfg.warmup_steps:
        space["warmup_steps"] = pick(list(tune_cfg.warmup_steps))
    if tune_cfg.weight_decays:
        space["weight_decay"] = pick(list(tune_cfg.weight_decays))
    return space


def _grid_order(values: list, tune_cfg: TuneConfig) -> list:
    """Grid values in the order trials start. ASHA promotes a trial that beats the trials already
    at a rung, so a grid in ascending lr order (each newcomer better than the last) stops almost
    nothing; with ASHA the values are shuffled, seeded by tune.seed."""
    if tune_cfg.scheduler != "asha":
        return values
    import random

    return random.Random(tune_cfg.seed).sample(values, len(values))


def search_algorithm(tune_cfg: TuneConfig, max_concurrent: int):
    """Random and grid: Tune's variant generator (it caps concurrency itself); optuna: TPE."""
    import ray.tune

    if tune_cfg.search == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        # Few trials: start TPE's model after a handful of random ones (Optuna's default is 10).
        sampler = TPESampler(seed=tune_cfg.seed, n_startup_trials=min(10, max(2, tune_cfg.num_samples // 3)))
        return ConcurrencyLimiter(OptunaSearch(sampler=sampler), max_concurrent=max_concurrent)
    return ray.tune.search.BasicVariantGenerator(random_state=tune_cfg.seed, max_concurrent=max_concurrent)


def scheduler(tune_cfg: TuneConfig):
    """Early stopping (ASHA, HyperBand), population-based training, or none (fifo)."""
    from ray.tune.schedulers import (ASHAScheduler, FIFOScheduler, HyperBandScheduler,
                                     PopulationBasedTraining)
    import ray.tune

    max_t = tune_cfg.max_iterations
    if tune_cfg.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                             grace_period=min(tune_cfg.grace_period, max_t),
                             reduction_factor=tune_cfg.reduction_factor)
    if tune_cfg.scheduler == "hyperband":
        # HyperBand pauses trials at rung ends and resumes them from their Tune checkpoint.
        return HyperBandScheduler(time_attr="training_iteration", max_t=max_t,
                                  reduction_factor=tune_cfg.reduction_factor)
    if tune_cfg.scheduler == "pbt":
        mutations = {"lr": ray.tune.loguniform(tune_cfg.lr_min, tune_cfg.lr_max)}
        if len(tune_cfg.batch_sizes) > 1:
            mutations["batch_size"] = list(tune_cfg.batch_sizes)
        # Not weight decay: a restarted trial restores it with the optimizer state, so a mutated
        # value would not apply (the lr is re-targeted, see tuning/trial.py).
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=tune_cfg.perturbation_interval,
                                       hyperparam_mutations=mutations, quantile_fraction=0.25,
                                       # Decide when every trial has reached the interval: small
                                       # searches get the same decisions however the trials interleave.
                                       synch=True)
    return FIFOScheduler()


def effective_lr(tune_cfg: TuneConfig, train_cfg: TrainConfig, lr: float, batch_size: int) -> float:
    """The lr a trial trains at: scaled with the batch under scale_lr, as sampled under keep_tokens."""
    if tune_cfg.batch_rule == "keep_tokens":
        return lr
    power = 0.5 if tune_cfg.lr_scaling == "sqrt" else 1.0
    return lr * (batch_size / train_cfg.batch_size) ** power


def trial_train_config(base: TrainConfig, tune_cfg: TuneConfig, params: dict,
                       resume_from: str | None = None) -> TrainConfig:
    """The pretraining config with the trial's hyperparameters and the search's step budget."""
    batch = int(params.get("batch_size", base.batch_size))
    grad_accum = base.grad_accum
    if tune_cfg.batch_rule == "keep_tokens":
        grad_accum = base.batch_size * base.grad_accum // batch
    return dataclasses.replace(
        base, lr=effective_lr(tune_cfg, base, float(params["lr"]), batch), batch_size=batch,
        grad_accum=grad_accum, max_steps=tune_cfg.max_steps, eval_every=tune_cfg.eval_every,
        warmup_steps=int(params.get("warmup_steps", min(base.warmup_steps, tune_cfg.max_steps // 5))),
        weight_decay=float(params.get("weight_decay", base.weight_decay)),
        log_every=tune_cfg.eval_every, num_workers=tune_cfg.workers_per_trial,
        # Tune decides when a trial stops, and restarts a failed one from its Tune checkpoint.
        max_failures=0, early_stopping_patience=0, resume_from=resume_from)
