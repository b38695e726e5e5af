"""Apply parallelism to a plain model from the outside; the model file knows nothing of it.

    model = parallelize(model, strategy="fsdp", device=device)

Order matters and follows torchtitan's parallelize.py: tensor parallel plans first (they rewrite
module weights into DTensors), then activation checkpointing (wraps blocks), then torch.compile
(per block, on the wrapped blocks), and data parallel last (FSDP2 shards whatever the previous
steps produced, per block and then the root, so each block's all-gather overlaps compute).
This version implements the data-parallel step (DDP or FSDP2); TP, PP, checkpointing and compile
slot into the same order.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def parallelize(model: nn.Module, strategy: str, device: torch.device) -> nn.Module:
    """Wrap `model` for data parallelism across the initialised process group."""
    model.to(device)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # One FSDP unit per block, then the root (embedding, final norm, head).
        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"strategy: unknown {strategy!r}; choose 'ddp' or 'fsdp'")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if hasattr(model, "module") else model
