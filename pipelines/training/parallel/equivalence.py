"""Check that parallel training computes what a single process computes (guards pytorch#162338).

Inside every rank of a distributed job (a Ray Train worker, or any initialised process group):

    diffs = compare_modes(model_cfg, [("fsdp", "fsdp", {}), ("tp", "fsdp", {"tp_size": 2})])

For each mode the rank builds the model twice from the same seed: once plain, trained on the whole
global batch in this process (the reference), once through `parallelize` on its data-parallel
share of the batch. It returns, per mode, the largest absolute difference (across all ranks) in
the loss, every gradient (unsharded), the clipped global gradient norm, and the loss after one
AdamW step. tests/test_parallel.py runs every mode this way on 2 and 4 CPU workers with gloo.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.transformer import lm_loss
from pipelines.training.parallel.config import ParallelConfig

_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


class _LMData:
    """The data-source interface the loop uses (loss of a batch), for synthetic batches."""

    @staticmethod
    def loss(model, batch, device, loss_fn=lm_loss):
        x, y = (t.to(device) for t in batch)
        return loss_fn(model(x), y), y.numel()


def _plain_name(name: str) -> str:
    """`module.layers.0._checkpoint_wrapped_module.attn...` -> `layers.0.attn...` (DDP, AC, compile)."""
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name.removeprefix("module.")


def _batches(cfg: ModelConfig, rows: int, seq_len: int, seed: int):
    """Two global batches of random tokens, identical on every rank: (inputs, targets) each (rows, T)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        tokens = torch.randint(0, cfg.vocab_size, (rows, seq_len + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out


def _reference(cfg: ModelConfig, batches, seed: int, max_norm: float, lr: float):
    torch.manual_seed(seed)
    model = build_model(cfg)
    x, y = batches[0]
    loss = lm_loss(model(x), y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    torch.optim.AdamW(model.parameters(), lr=lr).step()
    with torch.no_grad():
        loss2 = float(lm_loss(model(batches[1][0]), batches[1][1]))
    return loss.item(), grads, norm, loss2


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _run_mode(cfg, strategy, pcfg, batches, seed, max_norm, lr, device):
    from pipelines.training.parallelize import clip_grad_norm, forward_backward, parallelize

    torch.manual_seed(seed)
    par = parallelize(build_model(cfg), strategy, device, pcfg)
    rows = batches[0][0].shape[0] // par.dp_world
    mine = [(x[par.dp_rank * rows:(par.dp_rank + 1) * rows], y[par.dp_rank * rows:(par.dp_rank + 1) * rows])
            for x, y in batches]
    loss = _dp_mean(forward_backward(par, _LMData, mine[0], device, 1.0), par)
    grads = {_plain_name(n): _full(p.grad).detach().clone().cpu() for n, p in par.model.named_parameters()
             if p.grad is not None}
    norm = clip_grad_norm(par, max_norm)
    optimizer = torch.optim.AdamW(par.model.parameters(), lr=lr)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss2 = _dp_mean(forward_backward(par, _LMData, mine[1], device, 1.0), par)
    return loss, grads, norm, loss2


def _dp_mean(value: float, par) -> float:
    t = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(t)                    # every rank of a TP/PP group holds its replica's loss
    return float(t) / dist.get_world_size()


def compare_modes(cfg: ModelConfig, modes: list[tuple[str, str, dict]], rows: int = 8, seq_len: int = 16,
                  seed: int = 0, max_norm: float = 0.5, lr: float = 1e-2, device=None) -> dict:
    """{mode name: {"loss", "grad", "grad_norm", "loss_after_step": max abs diff, "n_grads"}}."""
    device = device or torch.device("cpu")
    batches = _batches(cfg, rows, seq_len, seed)
    ref_loss, ref_grads, ref_norm, ref_loss2 = _reference(cfg, batches, seed, max_norm, lr)
    results = {}
    for name, strategy, overrides in modes:
        pcfg = ParallelConfig(**overrides)
        pcfg.check_model(cfg)
        loss, grads, norm, loss2 = _run_mode(cfg, strategy, pcfg, batches, seed, max_norm, lr, device)
        missing = set(grads) - set(ref_grads)
        if missing:
            raise KeyError(f"{name}: parameters unknown to the plain model: {sorted(missing)[:3]}")
        grad_diff = max((F.l1_loss(g, ref_grads[n], reduction="none").max().item() for n, g in grads.items()),
                        default=float("inf"))
        diffs = torch.tensor([abs(loss - ref_loss), grad_diff, abs(norm - ref_norm), abs(loss2 - ref_loss2)],
                             dtype=torch.float64)
        dist.all_reduce(diffs, op=dist.ReduceOp.MAX)
        n_grads = torch.tensor(len(grads))
        dist.all_reduce(n_grads)          # gradients checked, summed over ranks (stages hold different ones)
        results[name] = {"loss": diffs[0].item(), "grad": diffs[1].item(), "grad_norm": diffs[2].item(),
                         "loss_after_step": diffs[3].item(), "n_grads": int(n_grads)}
    return results


def train_loop_compare(config: dict) -> None:
    """Ray Train entry point: {"groups": [{"model": ModelConfig dict, "modes": [[name, strategy, overrides]]}],
    "threads": int, "out": path}. Rank 0 writes {"<mode>/<quantity>": max abs difference} as JSON
    to `out` (Train V2 keeps reported metrics only alongside checkpoints)."""
    import json

    torch.set_num_threads(config.get("threads", 1))
    results = {}
    for group in config["groups"]:
        cfg = ModelConfig(**group["model"])
        for name, diffs in compare_modes(cfg, [tuple(m) for m in group["modes"]]).items():
            results.update({f"{name}/{key}": value for key, value in diffs.items()})
    if dist.get_rank() == 0:
        with open(config["out"], "w") as fh:
            json.dump(results, fh, indent=1)
