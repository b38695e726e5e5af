"""Training metrics: rank 0's history.jsonl and TensorBoard events, cross-rank reductions, progress
lines, and what MFU, gradient norm, memory and early stopping need.

    peak = peak_flops_per_worker(device, threads)   # first logged step (CPU: again at evaluations, a minute apart)
    mfu = achieved_flops_per_s / (peak * world)
    stopper = EarlyStopping(patience=3, min_delta=0.0); stop = stopper.update(val_loss)
"""
from __future__ import annotations

import json
import os
import re
import resource
import sys
import time

import torch
import torch.distributed as dist

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets: H100 SXM
# 989.4 TF, H100 NVL 835 TF, H100 PCIe 756 TF ("H100 Tensor Core GPU" datasheet, whose table lists
# twice these "with sparsity"); H200 989 TF (H200 datasheet, same SXM compute as H100); A100
# 312 TF (A100 datasheet); L4 121 TF (L4 datasheet: 242 with sparsity); H200 NVL 835 TF (H200
# datasheet: 1,671 with sparsity). First match wins.
GPU_PEAK_BF16 = [
    (r"H100.*PCIe", 756e12),
    (r"H100.*NVL", 835e12),
    (r"H100", 989.4e12),
    (r"H200.*NVL", 835e12),
    (r"H200", 989.4e12),
    (r"A100", 312e12),
    (r"\bL4\b", 121e12),
]


def gpu_peak_flops(device_name: str) -> float | None:
    """bf16 dense peak of a GPU from its torch.cuda.get_device_name(); None when not in the table."""
    for pattern, flops in GPU_PEAK_BF16:
        if re.search(pattern, device_name):
            return flops
    return None


def measure_matmul_flops(threads: int, n: int = 1024, repeats: int = 8) -> float:
    """fp32 matmul FLOP/s on `threads` torch threads: the fastest of `repeats` n x n products
    (~0.3 s on one core). The CPU's MFU denominator, measured where the worker runs. The fastest,
    not the median: a peak is what the cores do undisturbed, and anything else running (Ray
    starting its helper processes, another tenant) only slows a product down."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)  # leaves the global RNG alone (resumes replay it)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        for _ in range(2):  # warm up the allocator and BLAS
            a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / min(times)


def peak_flops_per_worker(device: torch.device, threads: int) -> float | None:
    """This worker's peak: the GPU table on CUDA, the measured fp32 matmul rate on CPU."""
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device))
    return measure_matmul_flops(threads)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this worker: allocated CUDA memory on GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _reduce(values: list[float], op) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t, op=op)
    return t


def mean_across_ranks(values: list[float]) -> list[float]:
    world = dist.get_world_size() if dist.is_initialized() else 1
    return (_reduce(values, dist.ReduceOp.SUM) / world).tolist()


def sum_across_ranks(values: list[float]) -> list[float]:
    return _reduce(values, dist.ReduceOp.SUM).tolist()


def max_across_ranks(values: list[float]) -> list[float]:
    return _reduce(values, dist.ReduceOp.MAX).tolist()


class EarlyStopping:
    """Stop when validation loss has not improved on the best by more than min_delta for
    `patience` evaluations in a row (patience 0 never stops). Its state goes into checkpoints."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad_evals = float("inf"), 0

    def update(self, val_loss: float) -> bool:
        """Record one evaluation; True when training should stop now."""
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_evals = val_loss, 0
        else:
            self.bad_evals += 1
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals = state["best"], state["bad_evals"]


def progress_line(done: int, max_steps: int, metrics: dict, eta_s: float) -> str:
    """One line per logged step: loss, lr, gradient norm, throughput, MFU, memory, ETA."""
    parts = [f"[train] step {done}/{max_steps} loss {metrics['loss']:.3f}"]
    if "val_loss" in metrics:
        parts.append(f"val {metrics['val_loss']:.3f}")
    parts.append(f"lr {metrics['lr']:.2e} gnorm {metrics['grad_norm']:.2f} tok/s {metrics['tokens_per_s']:,.0f}")
    if metrics.get("mfu") is not None:
        parts.append(f"mfu {100 * metrics['mfu']:.1f}%")
    parts.append(f"mem {metrics['peak_mem_gb']:.2f}GB eta {eta_s:.0f}s")
    return " ".join(parts)


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
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()


def say(message: str) -> None:
    # Ray Train patches print() into a logger that also tees to stdout (each line twice on the
    # driver); writing to the real stdout once goes to the driver once.
    print(message, file=sys.__stdout__, flush=True)
