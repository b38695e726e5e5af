"""Training metrics: rank 0's history.jsonl and TensorBoard events, cross-rank means, progress lines."""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist


def mean_across_ranks(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


class MetricsLog:
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


def say(message: str) -> None:
    # Ray Train patches print() into a logger that also tees to stdout (each line twice on the
    # driver); writing to the real stdout once goes to the driver once.
    print(message, file=sys.__stdout__, flush=True)
