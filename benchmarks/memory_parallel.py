"""Memory per worker for DDP, FSDP2 and tensor parallel on 2 workers, the same ~20M-parameter model.

    python benchmarks/memory_parallel.py            # writes its section of benchmarks/RESULTS.md
    python benchmarks/memory_parallel.py --no-write --steps 2

Each mode runs in 2 fresh processes (torch.multiprocessing, gloo, 1 thread each) that build the
model, apply the real `pipelines.training.parallelize` and train a few AdamW steps. Per rank it
records the bytes this rank holds (its local shards: DTensor.to_local()) of parameters, gradients
and optimizer state, and the process's peak RSS (ru_maxrss) with its RSS before the model was
built, so the model's share of the peak is visible. Fresh processes per mode keep peaks apart.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _results import replace_section  # noqa: E402  (benchmarks/ is the script's folder)
from modeling.config import ModelConfig  # noqa: E402

MODEL = dict(vocab_size=16384, d_model=384, n_layers=8, n_heads=6, max_seq_len=256)
MODES = {"ddp": ("ddp", {}), "fsdp2": ("fsdp", {}), "tp": ("fsdp", {"tp_size": 2})}
MARKER = "memory_parallel"


def _local_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        t = t.to_local() if isinstance(t, DTensor) else t
        total += t.numel() * t.element_size()
    return total


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # Linux: KiB


def _worker(rank: int, world: int, mode: str, port: int, args, out: str) -> None:
    from modeling.encoder_decoder import build_model
    from modeling.transformer import lm_loss
    from pipelines.training.parallel.config import ParallelConfig
    from pipelines.training.parallelize import clip_grad_norm, forward_backward, parallelize

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    before = _rss_mb()
    cfg = ModelConfig(**MODEL)
    strategy, overrides = MODES[mode]
    torch.manual_seed(0)
    par = parallelize(build_model(cfg), strategy, torch.device("cpu"), ParallelConfig(**overrides))
    optimizer = torch.optim.AdamW(par.model.parameters(), lr=1e-3)

    class Data:
        @staticmethod
        def loss(model, batch, device):
            return lm_loss(model(batch[0]), batch[1]), batch[1].numel()

    g = torch.Generator().manual_seed(par.dp_rank)
    start = time.perf_counter()
    for _ in range(args.steps):
        tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1), generator=g)
        loss = forward_backward(par, Data, (tokens[:, :-1], tokens[:, 1:]), "cpu", 1.0)
        grads = _local_bytes(p.grad for p in par.model.parameters() if p.grad is not None)
        clip_grad_norm(par, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - start) / args.steps
    params = _local_bytes(par.model.parameters())
    optim = _local_bytes(v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
    row = {"mode": mode, "rank": rank, "params_mb": params / 2**20, "grads_mb": grads / 2**20,
           "optim_mb": optim / 2**20, "rss_before_mb": before, "peak_rss_mb": _rss_mb(),
           "s_per_step": seconds, "loss": loss}
    Path(out, f"{mode}-{rank}.json").write_text(json.dumps(row))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for mode in MODES:
            mp.spawn(_worker, args=(2, mode, _free_port(), args, out), nprocs=2)
            rows += [json.loads(Path(out, f"{mode}-{r}.json").read_text()) for r in range(2)]
    return rows


def _n_params() -> int:
    from modeling.encoder_decoder import build_model

    return sum(p.numel() for p in build_model(ModelConfig(**MODEL)).parameters())


def report(rows: list[dict], args, load_before, load_after) -> str:
    by = {(r["mode"], r["rank"]): r for r in rows}
    ddp_state = by["ddp", 0]["params_mb"] + by["ddp", 0]["optim_mb"]
    lines = [
        "## Memory per worker: DDP, FSDP2, tensor parallel (`benchmarks/memory_parallel.py`)", "",
        f"Command: `python benchmarks/memory_parallel.py --steps {args.steps} --batch {args.batch} "
        f"--seq-len {args.seq_len}`", "",
        f"Machine: {os.cpu_count()} CPU cores shared with other jobs (load average {load_before:.1f} before, "
        f"{load_after:.1f} after), torch {torch.__version__}, gloo, 2 processes x 1 thread per mode; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        f"Model: decoder-only {_n_params() / 1e6:.1f}M parameters ({json.dumps(MODEL)}, tied "
        f"embedding), fp32, AdamW, batch {args.batch} x {args.seq_len} tokens per rank.", "",
        "| mode | rank | params MiB | grads MiB | AdamW state MiB | params + optimizer vs DDP | "
        "RSS before model MiB | peak RSS MiB | s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = (r["params_mb"] + r["optim_mb"]) / ddp_state
        lines.append(f"| {r['mode']} | {r['rank']} | {r['params_mb']:.1f} | {r['grads_mb']:.1f} | "
                     f"{r['optim_mb']:.1f} | {share:.2f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['s_per_step']:.2f} |")
    lines += ["", "Params, grads and AdamW state are the bytes of this rank's local tensors (its shards "
              "under FSDP2/TP). Peak RSS is the whole process (torch, gloo, activations, allocator "
              "caches); every rank builds the full model before sharding it (no meta-device init yet). "
              "Timings come from a shared machine and are not comparable across modes or runs."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = measure(args)
    body = report(rows, args, load_before, os.getloadavg()[0])
    print(body)
    if not args.no_write:
        replace_section(MARKER, body)


if __name__ == "__main__":
    main()
