"""Muon on the blocks' weight matrices and AdamW on everything else, as one torch optimizer.

Muon (Jordan et al. 2024, github.com/KellerJordan/Muon; used by the modded-nanogpt speedruns)
replaces each hidden matrix's momentum update by its nearest semi-orthogonal matrix (5 quintic
Newton-Schulz steps). Embeddings, the output head, norms and biases keep AdamW, as in Jordan's
MuonWithAuxAdam. Muon's step is scaled by 0.2 * sqrt(max(rows, cols)) so its update RMS matches
AdamW's (Liu et al. 2025, "Muon is Scalable for LLM Training"), which lets one schedule drive both.

    opt = MuonWithAdamW([{"params": mats, "muon": True, "lr": 0.02, "weight_decay": 0.1},
                         {"params": rest, "lr": 5e-3, "weight_decay": 0.0}], betas=(0.9, 0.95))

Why not torch.optim.Muon: it orthogonalizes in bfloat16, which runs several times slower than
fp32 on CPUs without bf16 matrix units (here: 4x the whole step), and it rejects non-matrix
parameters, so a model would need two optimizers, two schedulers and two checkpointed states.
Here the Newton-Schulz runs in fp32 on CPU and bf16 on GPU; the AdamW half is torch's own
functional `torch.optim.adamw.adamw`, so its state (step, exp_avg, exp_avg_sq) is AdamW's.
Muon needs whole matrices: TrainConfig allows it with DDP and pipeline parallel, not FSDP or TP.
"""
from __future__ import annotations

import torch
from torch.optim.adamw import adamw

# Jordan's quintic coefficients: maximal slope at zero, singular values land in about [0.7, 1.2].
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T of g = U S V^T by Newton-Schulz iteration (bf16 on GPU, fp32 on CPU)."""
    a, b, c = _NS_COEFFICIENTS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T                                               # iterate on the wide side: (r, c), r <= c
    x = x / x.norm().clamp(min=1e-7)                          # spectral norm <= 1
    for _ in range(steps):
        gram = x @ x.T                                        # (r, r)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(g.dtype)


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer: groups with "muon": True get Muon, the others AdamW (see the module docstring)."""

    def __init__(self, param_groups, lr: float = 1e-3, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.95, ns_steps: int = 5):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        ns_steps=ns_steps, muon=False)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("muon: Muon groups must hold 2-D weight matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)
            update = orthogonalize(p.grad.lerp(buf, momentum), group["ns_steps"])   # Nesterov
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(update, alpha=-lr * 0.2 * max(p.shape) ** 0.5)

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
              [], [s["step"] for s in states], amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
              weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
