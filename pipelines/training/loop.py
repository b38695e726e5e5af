"""The training loop every Ray Train worker runs: build, parallelize, train, evaluate, checkpoint.

Launched by `pipelines.training.trainer.run_pretrain` (and by Tune trials through it); it never
runs on its own. Each evaluation step reports metrics and a checkpoint through `ray.train.report`
(folder layout and what a resume restores in pipelines/training/checkpointing.py); a run starts
from Ray Train's latest checkpoint after a failure, else from train.resume_from, else fresh.
Logged per step (history.jsonl, TensorBoard, progress line): loss, lr, grad_norm (before
clipping), tokens_per_s, mfu, peak_mem_gb; val_loss at evaluations, with early stopping. The data source owns the objective
(`data.loss`), so the loop trains language models, seq2seq pairs or masked instructions alike.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from cluster.quiet import quiet_train_worker
from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.sizing import train_flops_per_token
from pipelines.training.checkpointing import load_checkpoint, report_with_checkpoint, seed_rank
from pipelines.training.config import TrainConfig
from pipelines.training.finetune import prepare_model
from pipelines.training.metrics import (EarlyStopping, MetricsLog, max_across_ranks, mean_across_ranks,
                                        peak_flops_per_worker, peak_memory_bytes, progress_line, say,
                                        sum_across_ranks)
from pipelines.training.parallelize import clip_grad_norm, eval_loss, forward_backward, parallelize
from pipelines.training.schedule import make_optimizer, make_scheduler
from pipelines.training.sources import open_split


@torch.no_grad()
def evaluate(par, data, cfg: TrainConfig, device) -> float:
    """Token-weighted mean validation loss over the same windows every time, averaged over ranks
    (windows dealt by data-parallel rank; TP/PP replicas add equal weight, so the mean holds)."""
    par.model.eval()
    total = torch.zeros(2, dtype=torch.float64)  # (sum of token losses, token count)
    for batch in data.val_batches(cfg.batch_size, cfg.eval_tokens, par.dp_rank, par.dp_world):
        loss, n_targets = eval_loss(par, data, batch, device)
        total += torch.tensor([loss * n_targets, n_targets], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total)
    par.model.train()
    return float(total[0] / total[1].clamp(min=1))


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. config: {"model": dict, "train": dict, "tokens_dir", "tokenizer_dir", "log_dir"}."""
    import ray.train
    import ray.train.torch

    tcfg, mcfg = TrainConfig(**config["train"]), ModelConfig(**config["model"])
    quiet_train_worker()  # no "Reporting training result N" INFO line per report (cluster/quiet.py)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # One thread per allotted CPU: two workers on two cores with more threads each slow down 3-40x.
    torch.set_num_threads(tcfg.cpus_per_worker)
    device = ray.train.torch.get_device() if tcfg.use_gpu else torch.device("cpu")

    torch.manual_seed(tcfg.seed)  # identical initial weights on every rank
    # prepare_model: fine-tuning's base weights, freezing or LoRA (a no-op for pretraining).
    # parallelize: DDP/FSDP2, TP, PP, activation checkpointing, compile (train.parallel).
    par = parallelize(prepare_model(build_model(mcfg), config), tcfg.strategy, device, tcfg.parallel)
    model = par.model
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg)
    stopper = EarlyStopping(tcfg.early_stopping_patience, tcfg.early_stopping_min_delta)
    peak = _GroupPeak(device, tcfg.cpus_per_worker)
    flops_per_token = train_flops_per_token(mcfg, tcfg.seq_len)
    start, data_rows = _resume(tcfg, model, optimizer, scheduler, stopper, rank, world, par.dp_rank)

    train_data = open_split(config, "train", tcfg.seq_len)
    if hasattr(train_data, "follow"):   # a row stream (packed tokens): continue where the checkpoint was
        train_data.follow(par.dp_world, tcfg.grad_accum, tcfg.batch_size, start, data_rows)
    val_data = open_split(config, "val", tcfg.seq_len)
    log = MetricsLog(config.get("log_dir"), rank)
    tokens_per_step = tcfg.batch_size * tcfg.seq_len * tcfg.grad_accum * par.dp_world
    window = _Window()
    run_start, train_time_s = time.perf_counter(), 0.0   # both since this (re)start of the loop
    model.train()
    for step in range(start, tcfg.max_steps):
        step_lr = optimizer.param_groups[0]["lr"]
        for micro in range(tcfg.grad_accum):
            # The ranks of one TP group / pipeline read the same rows: data follows the dp rank.
            batch = train_data.batch(tcfg.batch_size, tcfg.seed, step, par.dp_rank, micro)
            window.loss += forward_backward(par, train_data, batch, device, 1 / tcfg.grad_accum)
        # The global norm before clipping (over shards, TP ranks and stages); 0 = measure only.
        window.grad_norm += clip_grad_norm(par, tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.steps += 1
        done = step + 1
        _maybe_inject_fault(config.get("fault_injection"), done, rank)

        is_eval = done % tcfg.eval_every == 0 or done == tcfg.max_steps
        if done % tcfg.log_every == 0 or is_eval:
            window_s = time.perf_counter() - window.start
            train_time_s += window_s   # time in training steps only: evaluation and checkpoints excluded
            tokens_per_s = tokens_per_step * window.steps / window_s
            train_loss, grad_norm, group_window_s = mean_across_ranks(
                [window.loss / window.steps, window.grad_norm / window.steps, window_s])
            memory, = max_across_ranks([peak_memory_bytes(device)])
            metrics = {"loss": train_loss, "lr": step_lr, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                       "mfu": peak.mfu(tokens_per_s * flops_per_token, group_window_s, remeasure=is_eval),
                       "peak_mem_gb": memory / 1e9, "tokens": done * tokens_per_step, "step": done,
                       "train_time_s": train_time_s, "wall_time_s": time.perf_counter() - run_start}
            stop = False
            if is_eval:
                metrics["val_loss"] = evaluate(par, val_data, tcfg, device)
                # val_loss is the same all-reduced number everywhere; the MAX makes sure.
                stop = bool(max_across_ranks([float(stopper.update(metrics["val_loss"]))])[0])
                metrics["best_val_loss"] = stopper.best
            if rank == 0:
                eta = (time.perf_counter() - run_start) / (done - start) * (tcfg.max_steps - done)
                say(progress_line(done, tcfg.max_steps, metrics, eta))
            log.write(done, metrics)
            window = _Window()
            if is_eval:
                train_state = {"step": done, "seed": tcfg.seed, "early_stopping": stopper.state_dict()}
                if hasattr(train_data, "rows_before"):
                    train_state["data_rows"] = train_data.rows_before(done)   # the stream position
                report_with_checkpoint(metrics, model, optimizer, scheduler, train_state, mcfg,
                                       config["tokenizer_dir"], rank, world)
            if stop:
                if rank == 0:
                    say(f"[train] early stopping at step {done}: val_loss has not improved on "
                        f"{stopper.best:.4f} for {stopper.bad_evals} evaluations")
                break


class _GroupPeak:
    """MFU's denominator: the whole group's peak FLOP/s, from the GPU table, or on CPU the matmul
    rate measured on each worker's threads. Measured at the first logged step, not at start-up:
    while Ray Train starts its helper actors the cores are busy, and a peak measured then came
    out at half the machine's (MFU over 100%). On CPU it is measured again at an evaluation once
    a minute of training has passed since the last measurement, and the fastest group total is
    kept: a host that another tenant slows during one measurement would otherwise leave the peak
    low for the whole run (MFU of 100.5% was logged that way). The minute keeps the ~0.3 s
    measurement out of short runs and Tune trials that evaluate every few steps."""

    REMEASURE_AFTER_S = 60.0

    def __init__(self, device, threads: int) -> None:
        self.device, self.threads, self.total = device, threads, None
        self.trained_s = self.measured_at_s = 0.0

    def mfu(self, achieved_flops_per_s: float, window_s: float, remeasure: bool = False) -> float | None:
        # A collective: every rank logs and evaluates at the same steps, and window_s is the ranks'
        # mean (all-reduced), so every rank reaches the same decision.
        self.trained_s += window_s
        stale = (remeasure and self.device.type == "cpu"
                 and self.trained_s - self.measured_at_s >= self.REMEASURE_AFTER_S)
        if self.total is None or stale:
            peak = peak_flops_per_worker(self.device, self.threads)
            total = sum_across_ranks([peak or 0.0])[0] if peak is not None else 0.0  # same GPU kind everywhere
            self.total, self.measured_at_s = max(self.total or 0.0, total), self.trained_s
        return achieved_flops_per_s / self.total if self.total else None


class _Window:
    """Sums over the steps since the last logged step."""

    def __init__(self) -> None:
        self.loss, self.grad_norm, self.steps, self.start = 0.0, 0.0, 0, time.perf_counter()


def _resume(tcfg: TrainConfig, model, optimizer, scheduler, stopper: EarlyStopping, rank: int, world: int,
            dp_rank: int) -> tuple[int, int | None]:
    """Restore Ray Train's latest checkpoint (after a failure), else train.resume_from; returns the
    step to start at and the data rows consumed before it (None: not recorded, step x rows per step). A fresh run seeds each rank's generators (dropout) from (seed, dp_rank): the
    ranks of one TP group or pipeline draw the same masks, so their replicated activations agree."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and tcfg.resume_from:
        checkpoint = ray.train.Checkpoint(tcfg.resume_from)
    if checkpoint is None:
        seed_rank(tcfg.seed, 0, dp_rank)
        return 0, None
    with checkpoint.as_directory() as directory:
        state = load_checkpoint(directory, model, optimizer, scheduler, rank, world, tcfg.seed, dp_rank)
    if "early_stopping" in state:
        stopper.load_state_dict(state["early_stopping"])
    if rank == 0:
        rng = "restored" if state["rng_restored"] else f"re-seeded (saved on {state['world_size']} workers)"
        say(f"[train] resumed from step {state['step']} of {checkpoint.path} on {world} workers; RNG {rng}")
    return state["step"], state.get("data_rows")


def _maybe_inject_fault(fault: dict | None, step: int, rank: int) -> None:
    """Kill this worker once at a chosen step, for fault-tolerance tests: {"step", "rank", "marker", "delay_s"}.

    The marker file makes it fire once, so the restarted group runs through.
    """
    if not fault or step != fault["step"] or rank != fault["rank"] or os.path.exists(fault["marker"]):
        return
    Path(fault["marker"]).write_text(f"killed rank {rank} at step {step}\n")
    # Ray Train's controller learns of reported checkpoints by polling (every 2 s): a worker that
    # dies sooner after a report restarts from the checkpoint before. `delay_s` lets a test model
    # a crash that comes later in the run.
    time.sleep(fault.get("delay_s", 0))
    say(f"[train] fault injection: killing rank {rank} at step {step}")
    os._exit(1)


