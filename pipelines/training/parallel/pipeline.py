"""Pipeline parallel with torch.distributed.pipelining: blocks split across stages, GPipe or 1F1B.

    stage_module = split_stage(model, stage, n_stages)      # this rank's blocks (+ embedding / head)
    runner = PipelineRunner(stage_module, stage, n_stages, pp_group, device, "1f1b", microbatches)
    loss = runner.forward_backward(inputs, targets, scale)   # every rank of the pipeline gets the loss

Each stage keeps the full model's parameter names (`layers.3.attn.wq.weight`), so distributed
checkpoints load across pipeline sizes and `gather_full_state` rebuilds the whole model on rank 0.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from modeling.transformer import embed_causal, lm_loss


class StageModule(nn.Module):
    """One pipeline stage of a Transformer: the embedding on the first, blocks, norm + head on the last.

    forward: tokens (B, T) long on the first stage, hidden (B, T, C) after -> hidden (B, T, C),
    or logits (B, T, V) on the last stage.
    """

    def __init__(self, model: nn.Module, layer_ids: range, first: bool, last: bool) -> None:
        super().__init__()
        self.cfg, self.first, self.last = model.cfg, first, last
        self.positions = model.positions              # RoPE tables: buffers only, needed by every block
        if first:
            self.tok_emb = model.tok_emb
        self.layers = nn.ModuleDict({str(i): model.layers[i] for i in layer_ids})
        if last:
            self.norm, self.lm_head = model.norm, model.lm_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            x, cos, sin, _ = embed_causal(self, x, None, None)                       # (B, T, C)
        else:
            _, cos, sin = self.positions(torch.arange(x.shape[1], device=x.device))
        for i, layer in self.layers.items():
            x = layer(x, cos, sin, None, int(i), None)
        return self.lm_head(self.norm(x)) if self.last else x                        # (B, T, V) | (B, T, C)


def split_stage(model: nn.Module, stage: int, n_stages: int) -> StageModule:
    """This stage's contiguous, equal share of the blocks (n_layers divisible by n_stages)."""
    per = len(model.layers) // n_stages
    return StageModule(model, range(stage * per, (stage + 1) * per), stage == 0, stage == n_stages - 1)


class PipelineRunner:
    """Runs a pipeline schedule for training and a plain send/recv forward for evaluation."""

    def __init__(self, module: nn.Module, stage: int, n_stages: int, group, device, schedule: str,
                 microbatches: int) -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        self.module, self.stage, self.n_stages, self.group, self.device = module, stage, n_stages, group, device
        self.first, self.last = stage == 0, stage == n_stages - 1
        self._scale = 1.0
        pipe_stage = PipelineStage(module, stage, n_stages, device, group=group)
        kind = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
        # Loss per microbatch is a mean; scale_grads (default) divides the summed gradients by the
        # microbatch count, so gradients equal those of the mean loss over the whole batch.
        self.schedule = kind(pipe_stage, microbatches, loss_fn=self._loss)

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return lm_loss(logits, targets) * self._scale

    def _rank_of(self, stage: int) -> int:
        return dist.get_global_rank(self.group, stage)

    def _share_loss(self, loss: torch.Tensor) -> float:
        """The last stage's loss, broadcast so every stage logs and reports the same value."""
        loss = loss.detach().to(torch.float64).cpu() if self.last else torch.zeros((), dtype=torch.float64)
        dist.broadcast(loss, src=self._rank_of(self.n_stages - 1), group=self.group)
        return float(loss)

    def forward_backward(self, inputs: torch.Tensor, targets: torch.Tensor, scale: float) -> float:
        """One pipelined forward+backward over microbatches; returns the batch's mean loss * scale."""
        self._scale = scale
        losses: list[torch.Tensor] = []
        args = (inputs.to(self.device),) if self.first else ()
        if self.last:
            self.schedule.step(*args, target=targets.to(self.device), losses=losses)
        else:
            self.schedule.step(*args)
        return self._share_loss(torch.stack(losses).mean() if self.last else None)

    @torch.no_grad()
    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Evaluation forward (any batch size): activations passed stage to stage with send/recv.

        The training schedule fixes its microbatch shapes at the first step; evaluation batches
        may be smaller (the last one), so it runs this simple forward instead.
        """
        B, T = inputs.shape
        if self.first:
            h = self.module(inputs.to(self.device))
        else:
            h = torch.empty(B, T, self.module.cfg.d_model, dtype=torch.float32, device=self.device)
            dist.recv(h, src=self._rank_of(self.stage - 1), group=self.group)
            h = self.module(h)
        if not self.last:
            dist.send(h.float().contiguous(), dst=self._rank_of(self.stage + 1), group=self.group)
            return self._share_loss(None)
        return self._share_loss(lm_loss(h, targets.to(self.device)))


def gather_full_state(full_stage_state: dict) -> dict:
    """Every rank's full (unsharded) stage state dict merged on rank 0 (others get {})."""
    parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object({k: v.cpu() for k, v in full_stage_state.items()}, parts, dst=0)
    merged: dict = {}
    for part in parts or []:
        merged.update(part)
    return merged
