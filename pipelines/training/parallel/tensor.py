"""Tensor parallel plans for the decoder-only Transformer (DTensor `parallelize_module`), Megatron style.

    apply_tensor_parallel(model, tp_mesh, sequence_parallel=True)

Attention: wq, wk, wv column-wise (each rank computes n_heads/tp query heads and n_kv_heads/tp
key/value heads; the modeling code infers the local head count from the projected width), wo
row-wise (partial sums reduced). SwiGLU/MLP: w1, w3 column-wise, w2 row-wise. With sequence
parallel the residual stream between blocks is split along the sequence (Shard(1)), the norms run
on their sequence shard (SequenceParallel), and each attention/feed-forward input is all-gathered.
The embedding is split by vocabulary rows; the LM head by vocabulary columns, output replicated,
so the loss code sees plain full logits.
"""
from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, RowwiseParallel,
                                               SequenceParallel, parallelize_module)

# Block.forward calls attn(h, cos, sin, cache, layer, mask): only h is a sharded activation.
_ATTN_ARGS = 6


def apply_tensor_parallel(model: nn.Module, mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Rewrite `model` (a Transformer) in place into DTensor shards over the 1-D `mesh`."""
    tied = model.lm_head.weight is model.tok_emb.weight
    seq = Shard(1) if sequence_parallel else Replicate()
    top = {
        "tok_emb": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq),
        "lm_head": ColwiseParallel(input_layouts=seq, output_layouts=Replicate()),
    }
    if sequence_parallel:
        top["norm"] = SequenceParallel()
    parallelize_module(model, mesh, top)
    if tied:  # each plan made its own DTensor of the shared weight: share one again (both Shard(0))
        model.lm_head.weight = model.tok_emb.weight
    for block in model.layers:
        parallelize_module(block, mesh, _block_plan(block, sequence_parallel))


def _block_plan(block: nn.Module, sequence_parallel: bool) -> dict:
    out = Shard(1) if sequence_parallel else Replicate()
    plan = {
        "attn.wq": ColwiseParallel(), "attn.wk": ColwiseParallel(), "attn.wv": ColwiseParallel(),
        "attn.wo": RowwiseParallel(output_layouts=out),
        "ffn.w1": ColwiseParallel(), "ffn.w2": RowwiseParallel(output_layouts=out),
    }
    if hasattr(block.ffn, "w3"):                      # SwiGLU's gate
        plan["ffn.w3"] = ColwiseParallel()
    if sequence_parallel:
        # Norms on the sequence shard; the attention and FFN inputs all-gathered back to full length.
        plan.update({
            "attn_norm": SequenceParallel(), "ffn_norm": SequenceParallel(),
            "attn": PrepareModuleInput(input_layouts=(Shard(1),) + (None,) * (_ATTN_ARGS - 1),
                                       desired_input_layouts=(Replicate(),) + (None,) * (_ATTN_ARGS - 1)),
            "ffn": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        })
    return plan
