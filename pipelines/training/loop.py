"""The training loop every Ray Train worker runs: build, parallelize, train, evaluate, checkpoint.

Launched by `pipelines.training.trainer.run_pretrain` (and by Tune trials through it); it never
runs on its own. Each evaluation step reports metrics and a checkpoint through `ray.train.report`
(folder layout in pipelines/training/checkpointing.py). The data source owns the objective
(`data.loss`), so the loop trains language models, seq2seq pairs or masked instructions alike.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from pipelines.training.checkpointing import load_checkpoint, report_with_checkpoint
from pipelines.training.config import TrainConfig
from pipelines.training.finetune import prepare_model
from pipelines.training.metrics import MetricsLog, mean_across_ranks, say
from pipelines.training.parallelize import parallelize
from pipelines.training.schedule import lr_at, make_optimizer
from pipelines.training.sources import open_split


@torch.no_grad()
def evaluate(model, data, cfg: TrainConfig, rank: int, world: int, device) -> float:
    """Token-weighted mean validation loss over the same windows every time, averaged over ranks."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)  # (sum of token losses, token count)
    for batch in data.val_batches(cfg.batch_size, cfg.eval_tokens, rank, world):
        loss, n_targets = data.loss(model, batch, device)
        total += torch.tensor([loss.item() * n_targets, n_targets], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total)
    model.train()
    return float(total[0] / total[1].clamp(min=1))


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. config: {"model": dict, "train": dict, "tokens_dir", "tokenizer_dir", "log_dir"}."""
    import ray.train
    import ray.train.torch

    tcfg, mcfg = TrainConfig(**config["train"]), ModelConfig(**config["model"])
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "Reporting..." line per report is noise
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # One thread per allotted CPU: two workers on two cores with more threads each slow down 3-40x.
    torch.set_num_threads(tcfg.cpus_per_worker)
    device = ray.train.torch.get_device() if tcfg.use_gpu else torch.device("cpu")

    torch.manual_seed(tcfg.seed)  # identical initial weights on every rank
    # prepare_model: fine-tuning's base weights, freezing or LoRA (a no-op for pretraining).
    model = parallelize(prepare_model(build_model(mcfg), config), tcfg.strategy, device)
    optimizer = make_optimizer(model, tcfg)
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = load_checkpoint(directory, model, optimizer)
        if rank == 0:
            say(f"[train] resumed from step {start}")

    train_data = open_split(config, "train", tcfg.seq_len)
    val_data = open_split(config, "val", tcfg.seq_len)
    log = MetricsLog(config.get("log_dir"), rank)
    tokens_per_step = tcfg.batch_size * tcfg.seq_len * tcfg.grad_accum * world
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    run_start = time.perf_counter()
    model.train()
    for step in range(start, tcfg.max_steps):
        # Seeding per step makes dropout replay identically after a resume.
        torch.manual_seed(tcfg.seed * 1_000_003 + step * world + rank)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tcfg)
        for micro in range(tcfg.grad_accum):
            batch = train_data.batch(tcfg.batch_size, tcfg.seed, step, rank, micro)
            loss = train_data.loss(model, batch, device)[0] / tcfg.grad_accum
            loss.backward()
            window_loss += loss.item()
        if tcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window_steps += 1
        done = step + 1
        _maybe_inject_fault(config.get("fault_injection"), done, rank)

        is_eval = done % tcfg.eval_every == 0 or done == tcfg.max_steps
        if done % tcfg.log_every == 0 or is_eval:
            elapsed = time.perf_counter() - window_start
            train_loss, = mean_across_ranks([window_loss / window_steps])
            metrics = {"loss": train_loss, "lr": lr_at(step, tcfg),
                       "tokens_per_s": tokens_per_step * window_steps / elapsed,
                       "tokens": done * tokens_per_step, "step": done}
            if is_eval:
                metrics["val_loss"] = evaluate(model, val_data, tcfg, rank, world, device)
            if rank == 0:
                eta = (time.perf_counter() - run_start) / (done - start) * (tcfg.max_steps - done)
                val = f" val {metrics['val_loss']:.3f}" if is_eval else ""
                say(f"[train] step {done}/{tcfg.max_steps} loss {train_loss:.3f}{val} "
                     f"tok/s {metrics['tokens_per_s']:,.0f} eta {eta:.0f}s")
            log.write(done, metrics)
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            if is_eval:
                report_with_checkpoint(metrics, model, optimizer, done, mcfg, config["tokenizer_dir"], rank)


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


