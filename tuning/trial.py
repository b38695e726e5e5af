"""One Tune trial: launch the pretraining TorchTrainer and relay its reports (with checkpoints) to Tune.

Ray Train V2's `TuneReportCallback` forwards metrics and a checkpoint *path*, but not a Tune
checkpoint, so PBT could not exploit a trial, HyperBand could not resume a paused one and
`Tuner.restore` would restart unfinished trials from scratch. Here a Train callback (`_Relay`,
in the Train controller) puts each rank-0 report and its checkpoint path on a one-slot queue;
the trial function takes them off and calls `ray.tune.report(metrics, checkpoint=...)` itself,
and the one-slot queue keeps Train from running ahead of Tune's decision on the last report.
A trial that Tune restores (PBT's exploit copies the donor's checkpoint, HyperBand unpauses,
`--resume`) finds it in `ray.tune.get_checkpoint()` and passes it to the loop as
`train.resume_from`; every start gets a fresh Train run name, because reusing one makes Ray
Train resume that run's own latest checkpoint instead.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from ray.train.v2.api.callback import UserCallback

from modeling.config import ModelConfig
from pipelines.training.config import TrainConfig
from tuning.config import TuneConfig

_DONE = "__bespoke_train_done__"


class _Relay(UserCallback):
    """Runs in the Train controller: hand every report (rank 0's metrics + checkpoint path) over."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        put_unless_gone(self.queue, {"metrics": metrics[0], "checkpoint": checkpoint.path if checkpoint else None})


def put_unless_gone(queue, item) -> bool:
    """Put on the trial's queue; False when its actor is gone.

    When Tune stops a trial (ASHA, PBT, the search ending), the trial function returns and its
    queue actor dies with it while Train is still winding down: nobody is left to read, so there
    is nothing to say (before, the fit thread's last put died here with a traceback).
    """
    from ray.exceptions import RayActorError

    try:
        queue.put(item)
    except RayActorError:
        return False
    return True


def make_trial_fn(model_cfg: ModelConfig, train_cfg: TrainConfig, tune_cfg: TuneConfig,
                  tokens_dir: str, tokenizer_dir: str, trials_dir: str,
                  fault_injection: dict | None = None) -> Callable[[dict], None]:
    """The Tune function. fault_injection {"batch_size", "step"} kills rank 0 of every trial with
    that batch size at that step (an out-of-memory kill, for tests)."""

    def trial(params: dict) -> None:
        import ray.tune
        from ray.util.queue import Queue

        from pipelines.training.trainer import build_trainer
        from tuning.placement import RecordPlacementGroup
        from tuning.space import trial_train_config

        ctx = ray.tune.get_context()
        name = f"{ctx.get_trial_name()}_{_start_count(trials_dir, ctx.get_trial_name())}"
        run_dir = Path(trials_dir, name)
        run_dir.mkdir(parents=True)
        restored = ray.tune.get_checkpoint()
        # A copy of the Tune checkpoint to start from, kept with the run (Train reads it once).
        resume_dir = restored.to_directory(str(run_dir / "resumed_from")) if restored else None
        if resume_dir and json.loads(Path(resume_dir, "state.json").read_text())["step"] >= tune_cfg.max_steps:
            return   # restarted after its last report (PBT may pause a trial there): nothing left
        cfg = trial_train_config(train_cfg, tune_cfg, params, resume_from=resume_dir)
        if resume_dir:
            _retarget_lr(resume_dir, cfg.lr)
        fault = None
        if fault_injection and params.get("batch_size") == fault_injection["batch_size"]:
            marker = Path(trials_dir, f"{ctx.get_trial_id()}.fault")
            fault = {"step": fault_injection["step"], "rank": 0, "marker": str(marker)}
        queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        (run_dir / "params.json").write_text(      # what this Train run trains with
            json.dumps({**params, "lr_trained": cfg.lr, "resume_from": resume_dir}))
        trainer = build_trainer(model_cfg, cfg, tokens_dir, tokenizer_dir, trials_dir, name,
                                callbacks=[_Relay(queue), RecordPlacementGroup(ctx.get_trial_id())],
                                fault_injection=fault)
        _fit_and_relay(trainer, queue, {"trial_lr": float(params["lr"]), "lr_peak": cfg.lr,
                                         "grad_accum": cfg.grad_accum})

    return trial


def _retarget_lr(checkpoint_dir: str, lr: float) -> None:
    """Make a resumed run train at this trial's lr, not the checkpoint's.

    The loop restores the LR scheduler, whose base_lrs are the lr of the run that wrote the
    checkpoint; after a PBT exploit that is the donor's, and PBT's new lr would never apply. The
    schedule's shape (warmup, decay) is a function of the step and stays. This edits the trial's
    own local copy of the checkpoint (ray.tune.get_checkpoint().to_directory()), never the donor's.
    """
    path = Path(checkpoint_dir, "state.json")
    state = json.loads(path.read_text())
    base = state.get("scheduler", {}).get("base_lrs")
    if base and base[0] > 0 and abs(base[0] - lr) > 1e-12 * lr:
        scale = lr / base[0]          # groups keep their ratios (e.g. a higher adapter lr)
        state["scheduler"]["base_lrs"] = [b * scale for b in base]
        path.write_text(json.dumps(state, indent=1))


def _start_count(trials_dir: str, trial_name: str) -> int:
    """0 for a trial's first start, 1 for its next (PBT exploit, HyperBand resume, --resume)..."""
    Path(trials_dir).mkdir(parents=True, exist_ok=True)
    return len(list(Path(trials_dir).glob(f"{trial_name}_*/")))


def _fit_and_relay(trainer, queue, extra: dict) -> None:
    """Fit in a thread; report each relayed result (plus `extra`) to Tune from the trial's thread."""
    import ray.tune
    from ray.util.queue import Empty

    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the trial thread below
            outcome["error"] = exc
        finally:
            put_unless_gone(queue, {_DONE: True})

    thread = threading.Thread(target=fit, name="bespoke-trial-fit", daemon=True)
    thread.start()
    while True:
        try:
            item = queue.get(timeout=5)
        except Empty:
            if thread.is_alive():
                continue
            break
        if _DONE in item:
            break
        metrics = {**item["metrics"], **extra}
        checkpoint = ray.tune.Checkpoint.from_directory(item["checkpoint"]) if item["checkpoint"] else None
        if checkpoint:
            metrics["checkpoint_path"] = item["checkpoint"]
        ray.tune.report(metrics, checkpoint=checkpoint)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
