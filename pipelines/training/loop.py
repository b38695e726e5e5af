"""The training loop every Ray Train worker runs: build, parallelize, train, evaluate, checkpoint.

Launched by `pipelines.training.trainer.run_pretrain` (and by Tune trials through it); it never
runs on its own. Each evaluation step reports metrics and a checkpoint through `ray.train.report`:
  <checkpoint>/dcp/      model + optimizer state from every rank (torch.distributed.checkpoint),
                         re-shardable, so a resumed run may use a different number of workers
  <checkpoint>/model/    the full model as safetensors + config.json + tokenizer.json (rank 0),
                         what evaluation, generation and export read
  <checkpoint>/state.json  the step (the data position and schedule are functions of it)
"""
from __future__ import annotations

import json
import math
import os
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from modeling.checkpoint import save_model
from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer, lm_loss
from pipelines.training.config import TrainConfig
from pipelines.training.data import PackedTokens
from pipelines.training.parallelize import parallelize


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only: decaying norm gains and biases hurts (GPT-3)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available() and cfg.use_gpu
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def _mean_across_ranks(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


@torch.no_grad()
def evaluate(model, data: PackedTokens, cfg: TrainConfig, rank: int, world: int, device) -> float:
    """Token-weighted mean validation loss over the same windows every time, averaged over ranks."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)  # (sum of token losses, token count)
    for x, y in data.val_batches(cfg.batch_size, cfg.eval_tokens, rank, world):
        loss = lm_loss(model(x.to(device)), y.to(device))
        total += torch.tensor([loss.item() * y.numel(), y.numel()], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total)
    model.train()
    return float(total[0] / total[1].clamp(min=1))


def _save_checkpoint(directory: str, model, optimizer, step: int, model_cfg: ModelConfig,
                     tokenizer_dir: str, rank: int) -> None:
    """Every rank writes its shard of model+optimizer (DCP); rank 0 also writes the plain model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=os.path.join(directory, "dcp"))
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        plain = Transformer(model_cfg)
        plain.load_state_dict(full)
        save_model(os.path.join(directory, "model"), plain, Tokenizer.load(tokenizer_dir))
        Path(directory, "state.json").write_text(json.dumps({"step": step}))


def _load_checkpoint(directory: str, model, optimizer) -> int:
    """Restore model+optimizer shards (re-sharded to this world size); returns the next step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=os.path.join(directory, "dcp"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return json.loads(Path(directory, "state.json").read_text())["step"]


class _MetricsLog:
    """Rank 0's record of the run: history.jsonl (for plots) and TensorBoard events."""

    def __init__(self, log_dir: str | None, rank: int) -> None:
        self.path = self.writer = None
        if rank != 0 or not log_dir:
            return
        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(log_dir, "history.jsonl")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir)
        except ImportError:  # tensorboard is optional at run time
            self.writer = None

    def write(self, step: int, metrics: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()


def _say(message: str) -> None:
    # Ray Train patches print() into a logger that also tees to stdout (each line twice on the
    # driver); writing to the real stdout once goes to the driver once.
    print(message, file=sys.__stdout__, flush=True)


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
    model = parallelize(Transformer(mcfg), tcfg.strategy, device)
    optimizer = make_optimizer(model, tcfg)
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = _load_checkpoint(directory, model, optimizer)
        if rank == 0:
            _say(f"[train] resumed from step {start}")

    train_data = PackedTokens(config["tokens_dir"], "train", tcfg.seq_len)
    val_data = PackedTokens(config["tokens_dir"], "val", tcfg.seq_len)
    log = _MetricsLog(config.get("log_dir"), rank)
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
            x, y = train_data.batch(tcfg.batch_size, tcfg.seed, step, rank, micro)
            loss = lm_loss(model(x.to(device)), y.to(device)) / tcfg.grad_accum
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
            train_loss, = _mean_across_ranks([window_loss / window_steps])
            metrics = {"loss": train_loss, "lr": lr_at(step, tcfg),
                       "tokens_per_s": tokens_per_step * window_steps / elapsed,
                       "tokens": done * tokens_per_step, "step": done}
            if is_eval:
                metrics["val_loss"] = evaluate(model, val_data, tcfg, rank, world, device)
            if rank == 0:
                eta = (time.perf_counter() - run_start) / (done - start) * (tcfg.max_steps - done)
                val = f" val {metrics['val_loss']:.3f}" if is_eval else ""
                _say(f"[train] step {done}/{tcfg.max_steps} loss {train_loss:.3f}{val} "
                     f"tok/s {metrics['tokens_per_s']:,.0f} eta {eta:.0f}s")
            log.write(done, metrics)
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            if is_eval:
                _report_with_checkpoint(metrics, model, optimizer, done, mcfg, config["tokenizer_dir"], rank)


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
    _say(f"[train] fault injection: killing rank {rank} at step {step}")
    os._exit(1)


def _report_with_checkpoint(metrics, model, optimizer, step, mcfg, tokenizer_dir, rank) -> None:
    import ray.train

    directory = tempfile.mkdtemp(prefix="bespoke-ckpt-")
    try:
        _save_checkpoint(directory, model, optimizer, step, mcfg, tokenizer_dir, rank)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
