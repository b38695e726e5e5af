"""GPU training throughput and MFU of bespokelm's decoder-only model, eager and compiled, on one GPU.

    python benchmarks/gpu_mfu.py --sizes 125M 350M --out gpu_mfu.json      # on a GPU machine
    python benchmarks/gpu_mfu.py --sizes 350M --modes compile --batch 16 --compile-loss
    python benchmarks/gpu_mfu.py --sizes 350M --modes compile --batch 16 --compile-loss --framework
    python benchmarks/gpu_mfu.py --sizes tiny --device cpu --steps 2 --batch 2 --seq-len 64   # smoke test

One training step = forward, loss, backward, fused AdamW step, with bf16 autocast over fp32 master
weights (the mixed-precision recipe FSDP2's MixedPrecisionPolicy applies per shard). `compile`
compiles each transformer block with torch.compile, as torchtitan does (repeated blocks share one
compiled graph); `--compile-loss` also compiles the cross-entropy, so the fp32 upcast, log-softmax
and gather over the (B, T, vocab) logits fuse into one pass instead of several (torchtitan's
`compile.components = ["model", "loss"]`). MFU = model FLOPs per token
(modeling.sizing.train_flops_per_token: 6N plus attention, PaLM's definition) x tokens/s / the
GPU's dense bf16 peak from its datasheet. `--framework` also times, after each row of this
script's own loop and in the same process, the step a training worker runs (pipelines/training:
parallelize, forward_backward, clip_grad_norm, make_optimizer and make_scheduler, with their
per-step loss and norm read-backs); its rows say "framework" (its compiled mode compiles the loss
too, so compare it with --compile-loss). The same script also measures an 8192^3 bf16 matmul, the
achievable ceiling on this card, side by side. Needs only torch and this repository (no Ray), so
it runs on a bare GPU box.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from modeling.config import ModelConfig  # noqa: E402
from modeling.sizing import count_params, train_flops_per_token  # noqa: E402
from modeling.transformer import Transformer, lm_loss  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's datasheets.
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
# GPT-3 125M / 350M shapes (Brown et al. 2020, table 2.1), Llama-style blocks; vocab 32768.
SIZES = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4),
    "125M": dict(d_model=768, n_layers=12, n_heads=12),
    "350M": dict(d_model=1024, n_layers=24, n_heads=16),
}


def gpu_peak(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def time_matmul(device, n: int = 8192, reps: int = 10) -> float:
    """Achieved bf16 matmul FLOP/s on random data (the card's practical ceiling)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Tokens:
    """The data-source interface pipelines/training's step calls: the loss of an (inputs, targets) batch."""

    @staticmethod
    def loss(model, batch, device, loss_fn=lm_loss):
        x, y = batch
        return loss_fn(model(x), y), y.numel()


def framework_step(model, compiled: bool, batch: int, seq_len: int, device, inputs, targets):
    """The step of pipelines/training/loop.py on one device: parallelize (compile per block and of
    the loss, bf16 autocast on GPU), forward_backward, clip_grad_norm, AdamW and the lr schedule."""
    from pipelines.training.config import TrainConfig
    from pipelines.training.parallel.config import ParallelConfig
    from pipelines.training.parallelize import clip_grad_norm, forward_backward, parallelize
    from pipelines.training.schedule import make_optimizer, make_scheduler

    tcfg = TrainConfig(seq_len=seq_len, batch_size=batch, lr=1e-4, warmup_steps=2, max_steps=1000,
                       use_gpu=device.type == "cuda", strategy="fsdp",
                       parallel=ParallelConfig(compile=compiled))
    par = parallelize(model, tcfg.strategy, device, tcfg.parallel)
    optimizer = make_optimizer(par.model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg)

    def step() -> float:
        loss = forward_backward(par, _Tokens, (inputs, targets), device, 1.0)
        clip_grad_norm(par, tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step


def bench(size: str, compiled: bool, batch: int, seq_len: int, steps: int, warmup: int, device,
          compile_loss: bool = False, framework: bool = False) -> dict:
    cfg = ModelConfig(vocab_size=32768, max_seq_len=seq_len, **SIZES[size])
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]                                  # (B, T) each
    if framework:
        step = framework_step(model, compiled, batch, seq_len, device, inputs, targets)
        return _timed(step, cfg, size, "framework" + (" compile" if compiled else " eager"),
                      batch, seq_len, steps, warmup, device)
    if compiled:
        for i, block in enumerate(model.layers):
            model.layers[i] = torch.compile(block)
    loss_fn = torch.compile(lm_loss) if compiled and compile_loss else lm_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    mode = ("compile+loss" if compile_loss else "compile") if compiled else "eager"
    return _timed(step, cfg, size, mode, batch, seq_len, steps, warmup, device)


def _timed(step, cfg: ModelConfig, size: str, mode: str, batch: int, seq_len: int, steps: int,
           warmup: int, device) -> dict:
    t0 = time.perf_counter()
    for _ in range(warmup):          # includes compilation for the compiled model
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    elapsed = time.perf_counter() - t0
    tokens_per_s = batch * seq_len * steps / elapsed
    flops = train_flops_per_token(cfg, seq_len) * tokens_per_s
    return {"size": size, "params": count_params(cfg), "mode": mode,
            "batch": batch, "seq_len": seq_len, "steps": steps, "step_s": elapsed / steps,
            "warmup_s": warmup_s, "tokens_per_s": tokens_per_s, "model_tflops": flops / 1e12,
            "final_loss": float(loss),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


def _report(row: dict, peak: float | None, matmul: float) -> dict:
    row["mfu"] = row["model_tflops"] * 1e12 / peak if peak else None
    row["of_measured_matmul"] = row["model_tflops"] * 1e12 / matmul
    mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
    print(f"{row['size']:>5} {row['mode']:>17} params {row['params'] / 1e6:.0f}M "
          f"batch {row['batch']}x{row['seq_len']} step {row['step_s'] * 1e3:.0f} ms  "
          f"{row['tokens_per_s']:,.0f} tok/s  {row['model_tflops']:.1f} TFLOP/s  MFU {mfu}  "
          f"of matmul {row['of_measured_matmul']:.1%}  mem {row['peak_mem_gib'] or 0:.1f} GiB  "
          f"warmup {row['warmup_s']:.0f}s", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["125M", "350M"], choices=list(SIZES))
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--batch", nargs="+", type=int, default=[16, 8], help="micro-batch per size, in --sizes order")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile-loss", action="store_true", help="compiled mode also compiles the loss")
    p.add_argument("--framework", action="store_true",
                   help="also time each mode through pipelines/training's step (no Ray)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    peak = gpu_peak(name) if device.type == "cuda" else None
    matmul = time_matmul(device, 8192 if device.type == "cuda" else 512)
    print(f"device {name}; datasheet bf16 peak {peak and peak / 1e12} TFLOP/s; "
          f"measured bf16 matmul {matmul / 1e12:.1f} TFLOP/s; torch {torch.__version__}", flush=True)
    rows = []
    for i, size in enumerate(args.sizes):
        batch = args.batch[min(i, len(args.batch) - 1)]
        for mode in args.modes:
            for framework in ([False, True] if args.framework else [False]):
                row = bench(size, mode == "compile", batch, args.seq_len, args.steps, args.warmup, device,
                            args.compile_loss, framework)
                rows.append(_report(row, peak, matmul))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": name, "torch": torch.__version__,
                                              "peak_bf16": peak, "matmul_bf16": matmul, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
