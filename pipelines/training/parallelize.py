"""Apply parallelism to a plain model from the outside; the model file knows nothing of it.

    par = parallelize(model, "fsdp", device, ParallelConfig(tp_size=2))
    loss = forward_backward(par, data, batch, device, scale)    # what the loop calls per micro-step
    norm = clip_grad_norm(par, max_norm)

Ranks form a DeviceMesh ("pp", "dp", "tp") of sizes (pp_size, world / (pp_size * tp_size), tp_size).
Order matters and follows torchtitan's parallelize.py:
  1. pipeline split: this rank keeps its stage's blocks (PP cuts the model before anything wraps it)
  2. tensor parallel: plans rewrite weights into DTensor shards (parallel/tensor.py)
  3. activation checkpointing: wraps each block (after TP, so recomputation replays the collectives)
  4. torch.compile per block (on the wrapped blocks, so each block compiles once), and of the loss,
     so the fp32 upcast, log-softmax and gather over the (B, T, vocab) logits fuse (the last
     pipeline stage keeps its eager loss)
  5. data parallel last: FSDP2 shards whatever the steps above produced (per block, then the root,
     so each block's all-gather overlaps compute), or DDP replicates it
  6. pipeline schedule (GPipe or 1F1B) over the wrapped stage
On GPU with train.parallel.mixed_precision, FSDP2's MixedPrecisionPolicy computes in bf16; where
no FSDP2 shards the model (one process, DDP, TP or PP alone) the forward runs under bf16 autocast
instead, over fp32 weights (torchtitan's maybe_enable_amp).
Ranks of one TP group (and of one pipeline) read the same batch: data is indexed by the
data-parallel rank `par.dp_rank` of `par.dp_world`, not the global rank.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from modeling.transformer import lm_loss
from pipelines.training.parallel.config import ParallelConfig
from pipelines.training.parallel.pipeline import PipelineRunner, StageModule, gather_full_state, split_stage


@dataclass
class Parallel:
    """The parallelized model and where this rank sits."""

    model: nn.Module                       # what the optimizer, clipping and checkpoints see
    dp_rank: int = 0                       # index for reading data (the same across a TP/PP group)
    dp_world: int = 1
    mesh: object = None                    # DeviceMesh ("pp", "dp", "tp"), None in a single process
    pipeline: PipelineRunner | None = None
    loss_fn: Callable = lm_loss            # what the data source's loss applies to (logits, targets)
    autocast_dtype: torch.dtype | None = None   # bf16 on GPU where FSDP2 does not cast

    def compute(self):
        """The context forwards run in: bf16 autocast on GPU (set only there), else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)


def parallelize(model: nn.Module, strategy: str, device: torch.device,
                cfg: ParallelConfig | None = None) -> Parallel:
    """Wrap `model` for the parallelism in `cfg` across the initialised process group."""
    cfg = cfg or ParallelConfig()
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy: unknown {strategy!r}; choose 'ddp' or 'fsdp'")
    model.to(device)
    world = dist.get_world_size() if dist.is_initialized() else 1
    if world == 1:                                         # one process: only the per-block wrappers
        _apply_per_block(model, cfg)
        return Parallel(model, **_compute_settings(cfg, device, fsdp_casts=False))
    from torch.distributed.device_mesh import init_device_mesh

    if world % cfg.model_parallel:
        raise ValueError(f"num_workers: world size {world} is not a multiple of tp_size * pp_size "
                         f"= {cfg.model_parallel}")
    dp = world // cfg.model_parallel
    mesh = init_device_mesh(device.type, (cfg.pp_size, dp, cfg.tp_size), mesh_dim_names=("pp", "dp", "tp"))
    pp_rank = mesh["pp"].get_local_rank()
    if cfg.pp_size > 1:                                    # 1. pipeline split
        model = split_stage(model, pp_rank, cfg.pp_size)
    if cfg.tp_size > 1:                                    # 2. tensor parallel
        from pipelines.training.parallel.tensor import apply_tensor_parallel

        apply_tensor_parallel(model, mesh["tp"], cfg.sequence_parallel)
    _apply_per_block(model, cfg)                           # 3. activation checkpointing, 4. compile
    if dp > 1:                                             # 5. data parallel
        model = _data_parallel(model, strategy, mesh, cfg, device)
    runner = None
    if cfg.pp_size > 1:                                    # 6. pipeline schedule
        runner = PipelineRunner(model, pp_rank, cfg.pp_size, mesh["pp"].get_group(), device,
                                cfg.pp_schedule, cfg.pp_microbatches)
    fsdp_casts = strategy == "fsdp" and dp > 1
    return Parallel(model, mesh["dp"].get_local_rank(), dp, mesh, runner,
                    **_compute_settings(cfg, device, fsdp_casts))


def _compute_settings(cfg: ParallelConfig, device: torch.device, fsdp_casts: bool) -> dict:
    """The loss function (compiled with cfg.compile) and the autocast dtype: bf16 on GPU with
    mixed_precision, unless FSDP2's MixedPrecisionPolicy already computes in bf16."""
    amp = device.type == "cuda" and cfg.mixed_precision and not fsdp_casts
    return {"loss_fn": torch.compile(lm_loss) if cfg.compile else lm_loss,
            "autocast_dtype": torch.bfloat16 if amp else None}


def _blocks(model: nn.Module) -> nn.Module:
    """The container of blocks: `layers` (a ModuleList, or a ModuleDict in a pipeline stage)."""
    return model.module.layers if hasattr(model, "module") else model.layers


def _apply_per_block(model: nn.Module, cfg: ParallelConfig) -> None:
    """Activation checkpointing then compile, each block in place (parameter names are unchanged
    for checkpoints: DCP's state-dict helpers drop the wrapper prefixes)."""
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        layers = _blocks(model)
        for name, block in list(layers.named_children()):
            layers.register_module(name, checkpoint_wrapper(block, preserve_rng_state=True))
    if cfg.compile:
        for block in _blocks(model).children():
            block.compile()


def _data_parallel(model: nn.Module, strategy: str, mesh, cfg: ParallelConfig, device) -> nn.Module:
    dp_mesh = mesh["dp"]
    if strategy == "ddp":
        if cfg.model_parallel > 1:
            raise ValueError("strategy: ddp combines with neither tensor-parallel (DTensor) weights nor "
                             "pipeline stages; use fsdp")
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, process_group=dp_mesh.get_group(),
                                       device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs = {"mesh": dp_mesh}
    if device.type == "cuda" and cfg.mixed_precision:   # bf16 compute, fp32 gradient reduction
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cfg.fsdp_cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    # A pipeline runs several microbatches forward before their backward: keep blocks gathered.
    reshard = cfg.pp_size == 1
    for block in model.layers.values() if isinstance(model.layers, nn.ModuleDict) else model.layers:
        fully_shard(block, reshard_after_forward=reshard, **kwargs)
    fully_shard(model, reshard_after_forward=reshard, **kwargs)   # root: embedding, final norm, head
    return model


def forward_backward(par: Parallel, data, batch, device, scale: float) -> float:
    """One micro-step: loss * scale backpropagated into the gradients; returns that scaled loss.

    With a pipeline the schedule runs forward and backward over microbatches (loss on the last
    stage, shared with the others); otherwise the data source's own loss does.
    """
    if par.pipeline is not None:
        inputs, targets = _pipeline_batch(data, batch)
        with par.compute():
            return par.pipeline.forward_backward(inputs, targets, scale)
    with par.compute():
        loss = data.loss(par.model, batch, device, par.loss_fn)[0] * scale
    loss.backward()
    return loss.item()


def eval_loss(par: Parallel, data, batch, device) -> tuple[float, int]:
    """(mean loss, target count) of a batch without gradients, pipelined or not."""
    if par.pipeline is not None:
        inputs, targets = _pipeline_batch(data, batch)
        with par.compute():
            return par.pipeline.forward_loss(inputs, targets), int((targets != -100).sum())
    with par.compute():
        loss, n = data.loss(par.model, batch, device, par.loss_fn)
    return loss.item(), n


def _pipeline_batch(data, batch):
    """(inputs, targets) of a plain next-token batch; the stages pass only hidden states along,
    so per-row masks (document masking, instruction or seq2seq batches) cannot follow yet."""
    if getattr(data, "eos_id", None) is not None or len(batch) != 2:
        raise ValueError("train.parallel.pp_size: pipeline parallel trains packed token data without "
                         "document masks only; set train.document_mask: false or pp_size: 1")
    return batch


def clip_grad_norm(par: Parallel, max_norm: float) -> float:
    """Clip the global gradient norm (over shards, TP ranks and pipeline stages); returns it.

    torch's clip_grad_norm_ sees only this rank's pipeline stage and cannot mix plain tensors
    with DTensors, so the norm is computed per group and combined here.
    """
    params = [p for p in par.model.parameters() if p.grad is not None]
    total = _total_norm([p.grad for p in params])
    if par.pipeline is not None:                           # each stage holds different parameters
        squared = total.pow(2)
        dist.all_reduce(squared, group=par.pipeline.group)
        total = squared.sqrt()
    coef = max_norm / (float(total) + 1e-6)
    if max_norm > 0 and coef < 1:      # a Python scalar multiplies plain and DTensor gradients alike
        for p in params:
            p.grad.mul_(coef)
    return float(total)


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    groups: dict = {}
    for g in grads:
        groups.setdefault(id(g.device_mesh) if isinstance(g, DTensor) else None, []).append(g)
    norms = []
    for key, group in groups.items():
        norm = torch.nn.utils.get_total_norm(group)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.float().cpu() for n in norms]))


def full_model_state(model: nn.Module) -> dict:
    """The whole model's unsharded state dict on rank 0 (other ranks may get {}), for model/ folders."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not isinstance(unwrap(model), StageModule):
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # cpu_offload=True would keep values on global rank 0 only: every stage gathers its own, then rank 0 merges.
    stage = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return gather_full_state(stage)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if hasattr(model, "module") else model
