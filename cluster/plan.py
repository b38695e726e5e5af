"""Sizing an LLM run before it starts: `bespoke plan`.

    bespoke plan --params 7B                          # tokens = 20 per parameter, compute, memory, layout
    bespoke plan --tokens 300B --gpu H100 --gpus 64    # the compute-optimal model for that many tokens
    bespoke plan --gpu A100 --gpus 256 --hours 720     # the model a compute budget trains (Chinchilla)
    bespoke plan --gpu H200 --gpu-hours 100000         # the same from GPU-hours
    bespoke plan --d-model 4096 --n-layers 32 --n-heads 32 --ffn-hidden 11008 --vocab 32000 --untied

Everything is arithmetic on the model config (modeling.sizing), so the numbers are exact for the
model they describe and estimates (stated MFU, activation formula) for the run. Memory per GPU uses
mixed-precision AdamW: bf16 weights (2 B/param) and gradients (2 B), fp32 master weights, Adam m
and v (12 B), the ZeRO paper's 16 bytes per parameter. DDP replicates all of it; FSDP (ZeRO-3)
shards all of it over the data-parallel group; tensor parallelism (Megatron, with sequence
parallelism) divides weights and activations by its degree. Activations follow Korthikanti et al.
2022 with fused (flash) attention: 34 s b h bytes per layer, or 2 s b h with full activation
checkpointing (plus one layer being recomputed), and fp32 logits 4 s b V.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass

from modeling.config import ModelConfig
from modeling.sizing import count_params, train_flops_per_token

# Dense bf16 peak FLOP/s (no sparsity) and memory per GPU, from the vendors' data sheets (SXM parts).
GPUS = {
    "A100": {"peak_flops": 312e12, "memory_gb": 80},
    "H100": {"peak_flops": 989e12, "memory_gb": 80},
    "H200": {"peak_flops": 989e12, "memory_gb": 141},
}
BYTES_WEIGHTS, BYTES_GRADS, BYTES_OPTIMIZER = 2, 2, 12
GB = 1e9


def parse_count(text: str | float | int) -> float:
    """'7B' -> 7e9, '300M' -> 3e8, '2T' -> 2e12, '1.5e9' -> 1.5e9."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    text = text.strip().upper()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def shape_for_params(target: float, vocab: int = 32000, seq_len: int = 4096) -> ModelConfig:
    """A Llama-shaped config (head size 128, depth = d_model / 128, SwiGLU) closest to `target`."""
    best = None
    for d_model in range(256, 32768 + 1, 128):
        n_layers = max(2, round(d_model / 128))
        cfg = ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=max(2, d_model // 128),
                          max_seq_len=seq_len, tie_embeddings=False)
        error = abs(math.log(count_params(cfg) / target))
        if best is None or error < best[0]:
            best = (error, cfg)
    return best[1]


@dataclass
class Layout:
    strategy: str          # "DDP", "FSDP", "TP4 x FSDP", ...
    tp: int
    dp: int
    checkpointing: bool
    memory_gb: dict        # per GPU: weights, grads, optimizer, activations, total


def memory_per_gpu(cfg: ModelConfig, dp: int, tp: int, sharded: bool, checkpointing: bool,
                   seq_len: int, micro_batch: int) -> dict:
    """Bytes per GPU (in GB) for one layout; sharded = FSDP over the dp GPUs."""
    n = count_params(cfg) / tp
    shard = dp if sharded else 1
    s, b, h, L = seq_len, micro_batch, cfg.d_model, cfg.n_layers
    if checkpointing:
        act = 2 * s * b * h * L + 34 * s * b * h / tp
    else:
        act = 34 * s * b * h * L / tp
    act += 4 * s * b * cfg.vocab_size / tp
    mem = {"weights": BYTES_WEIGHTS * n / shard, "grads": BYTES_GRADS * n / shard,
           "optimizer": BYTES_OPTIMIZER * n / shard, "activations": act}
    if sharded:  # FSDP gathers one layer's full weights at a time (and prefetches the next)
        mem["weights"] += 2 * BYTES_WEIGHTS * n / L
    mem = {k: v / GB for k, v in mem.items()}
    mem["total"] = sum(mem.values())
    return mem


def choose_layout(cfg: ModelConfig, n_gpus: int, gpu_memory_gb: float, seq_len: int, micro_batch: int,
                  usable: float = 0.9) -> list[Layout]:
    """Every layout from simplest to most involved, the first one that fits first (fits = total <
    usable * memory). Tensor parallelism stays inside an 8-GPU node."""
    layouts = []
    for tp in (1, 2, 4, 8):
        if tp > n_gpus or cfg.n_heads % tp:
            continue
        dp = max(1, n_gpus // tp)
        for sharded in ((False, True) if tp == 1 else (True,)):
            for ckpt in (False, True):
                name = ("FSDP" if sharded else "DDP") if tp == 1 else f"TP{tp} x FSDP"
                mem = memory_per_gpu(cfg, dp, tp, sharded, ckpt, seq_len, micro_batch)
                layouts.append(Layout(name + (" + act. ckpt" if ckpt else ""), tp, dp, ckpt, mem))
    return sorted(layouts, key=lambda l: l.memory_gb["total"] >= usable * gpu_memory_gb)  # stable


def plan(params: float | None = None, tokens: float | None = None, gpu: str = "H100", gpus: int | None = None,
         hours: float | None = None, gpu_hours: float | None = None, mfu: float = 0.4, tokens_per_param: float = 20.0, seq_len: int = 4096,
         vocab: int = 32000, micro_batch: int = 1, checkpoints_kept: int = 3, cfg: ModelConfig | None = None) -> dict:
    """The whole sizing as a dict. Give one of: cfg (an explicit shape), params, tokens, or a compute
    budget (gpu_hours, or gpus and hours): the budget sizes a compute-optimal model, C = 6 N D, D = 20 N."""
    spec = GPUS[gpu]
    achieved = spec["peak_flops"] * mfu                                   # FLOP/s per GPU
    if gpu_hours is None and gpus and hours:
        gpu_hours = gpus * hours
    budget = gpu_hours * 3600 * achieved if gpu_hours else None           # FLOPs
    if cfg is None:
        if params is None and tokens is not None:
            params = tokens / tokens_per_param
        if params is None and budget is None:
            raise ValueError("plan: give params, tokens, a model shape, or a compute budget (gpu_hours)")
        if params is None:
            params = math.sqrt(budget / (6 * tokens_per_param))
        cfg = shape_for_params(params, vocab, seq_len)
    n = count_params(cfg)
    per_token = train_flops_per_token(cfg, seq_len)
    if tokens is None:
        tokens = budget / per_token if budget else tokens_per_param * n
    flops = per_token * tokens
    gpu_hours = flops / achieved / 3600
    if gpus is None:  # enough GPUs to finish in about 30 days, in whole 8-GPU nodes
        gpus = max(8, 8 * math.ceil(gpu_hours / (30 * 24) / 8))
    layouts = choose_layout(cfg, gpus, spec["memory_gb"], seq_len, micro_batch)
    fits = layouts[0].memory_gb["total"] < 0.9 * spec["memory_gb"]
    return {
        "model": {k: v for k, v in cfg.to_dict().items() if k in ("vocab_size", "d_model", "n_layers", "n_heads",
                  "n_kv_heads", "ffn_hidden", "tie_embeddings")} | {"ffn_hidden": cfg.ffn_dim},
        "params": n, "tokens": tokens, "tokens_per_param": tokens / n, "seq_len": seq_len,
        "flops_per_token": per_token, "train_flops": flops,
        "gpu": gpu, "peak_flops": spec["peak_flops"], "mfu": mfu, "gpus": gpus,
        "gpu_hours": gpu_hours, "wall_days": gpu_hours / gpus / 24,
        "layout": asdict(layouts[0]) | {"fits": fits}, "micro_batch": micro_batch,
        "ddp_memory_gb": layouts_by_name(layouts, "DDP"), "fsdp_memory_gb": layouts_by_name(layouts, "FSDP"),
        "storage_gb": storage_gb(n, tokens, cfg.vocab_size, checkpoints_kept),
    }


def layouts_by_name(layouts: list[Layout], name: str) -> dict | None:
    return next((l.memory_gb for l in layouts if l.strategy == name), None)


def storage_gb(n: float, tokens: float, vocab: int, checkpoints_kept: int) -> dict:
    """Disk: raw text (~4 bytes a token), packed token ids, full checkpoints with optimizer state."""
    id_bytes = 2 if vocab <= 65536 else 4
    return {"raw_text": 4 * tokens / GB, "tokens": id_bytes * tokens / GB,
            "checkpoint": (4 + 8) * n / GB, "checkpoints": checkpoints_kept * 12 * n / GB,
            "final_bf16_weights": 2 * n / GB}


def format_table(result: dict) -> str:
    """The plan as aligned `name  value` lines."""
    m, lay = result["model"], result["layout"]
    rows = [
        ("model", f"d_model {m['d_model']}, {m['n_layers']} layers, {m['n_heads']} heads, ffn {m['ffn_hidden']}, "
                  f"vocab {m['vocab_size']}"),
        ("parameters", f"{result['params'] / 1e9:.3f} B"),
        ("training tokens", f"{result['tokens'] / 1e9:.1f} B ({result['tokens_per_param']:.1f} per parameter)"),
        ("FLOPs per token", f"{result['flops_per_token']:.3e} (seq_len {result['seq_len']})"),
        ("training FLOPs", f"{result['train_flops']:.3e}"),
        ("GPU", f"{result['gpus']} x {result['gpu']} at {result['mfu']:.0%} MFU of {result['peak_flops'] / 1e12:.0f} TFLOP/s"),
        ("GPU-hours", f"{result['gpu_hours']:,.0f}"),
        ("wall time", f"{result['wall_days']:.1f} days"),
        ("layout", f"{lay['strategy']} (tp {lay['tp']}, dp {lay['dp']}){'' if lay['fits'] else '  DOES NOT FIT'}"),
    ]
    for key in ("weights", "grads", "optimizer", "activations", "total"):
        rows.append((f"  memory/GPU {key}", f"{lay['memory_gb'][key]:.1f} GB"))
    for name in ("ddp", "fsdp"):
        mem = result[f"{name}_memory_gb"]
        if mem:
            rows.append((f"  {name.upper()} total/GPU", f"{mem['total']:.1f} GB"))
    for key, value in result["storage_gb"].items():
        rows.append((f"storage {key}", f"{value:,.1f} GB"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bespoke plan` arguments (registered by pipelines.cli)."""
    parser.add_argument("--params", help="target parameter count, e.g. 7B, 350M")
    parser.add_argument("--tokens", help="token budget, e.g. 2T (default: tokens-per-param x params)")
    parser.add_argument("--gpu", default="H100", choices=sorted(GPUS))
    parser.add_argument("--gpus", type=int, help="number of GPUs (default: enough for about 30 days)")
    parser.add_argument("--hours", type=float, help="with --gpus: a compute budget; the plan sizes the model to it")
    parser.add_argument("--gpu-hours", type=float, help="a compute budget in GPU-hours; the plan sizes the model to it")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation (default 0.4)")
    parser.add_argument("--tokens-per-param", type=float, default=20.0)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per step")
    for name in ("d-model", "n-layers", "n-heads", "n-kv-heads", "ffn-hidden"):
        parser.add_argument(f"--{name}", type=int, help="explicit model shape (all of d-model, n-layers, n-heads)")
    parser.add_argument("--untied", action="store_true", help="separate LM head (explicit shape)")
    parser.add_argument("--json", action="store_true", help="print only the JSON")


def cli(args) -> None:
    cfg = None
    if args.d_model:
        cfg = ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                          n_kv_heads=args.n_kv_heads, ffn_hidden=args.ffn_hidden, max_seq_len=args.seq_len,
                          tie_embeddings=not args.untied)
    result = plan(params=parse_count(args.params) if args.params else None,
                  tokens=parse_count(args.tokens) if args.tokens else None, gpu=args.gpu, gpus=args.gpus,
                  hours=args.hours, gpu_hours=args.gpu_hours, mfu=args.mfu, tokens_per_param=args.tokens_per_param, seq_len=args.seq_len,
                  vocab=args.vocab, micro_batch=args.micro_batch, cfg=cfg)
    if not args.json:
        print(format_table(result))
    print(json.dumps(result, indent=2))
