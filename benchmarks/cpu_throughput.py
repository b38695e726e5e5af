"""CPU training throughput: one bespokelm Ray Train worker against a plain PyTorch loop, same model.

    python benchmarks/cpu_throughput.py                    # ~5M and ~20M models, eager and compiled
    python benchmarks/cpu_throughput.py --sizes 5M --modes eager --steps 6   # quicker

For each model size and mode, side by side in this one script:
  plain      a single-process loop: the same Transformer, AdamW, batches, clipping, torch threads
  framework  `run_pretrain` with one Ray Train worker holding the same number of CPUs (its torch
             threads are set to them), reading the same packed tokens
and the fp32 matmul rate measured here on the same threads before Ray starts (the CPU's practical
peak). Reported: tokens/s (median over logged windows after warm-up), achieved model GFLOP/s
(6N + attention per token, modeling.sizing) and its fraction of the matmul rate, and
framework/plain. Plain and framework runs alternate (plain first and last) and each framework run
is compared with the mean of its two neighbours: the shared host's speed drifts by 10-30% over
minutes. Writes JSON and the `cpu_throughput` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import replace_section  # noqa: E402
from _shakespeare import shakespeare_tokens  # noqa: E402
from modeling.config import ModelConfig  # noqa: E402
from modeling.sizing import count_params, train_flops_per_token  # noqa: E402
from modeling.transformer import Transformer, lm_loss  # noqa: E402
from pipelines.training.config import TrainConfig  # noqa: E402
from pipelines.training.data import PackedTokens  # noqa: E402
from pipelines.training.schedule import make_optimizer  # noqa: E402

SIZES = {"5M": dict(d_model=256, n_layers=6, n_heads=8), "20M": dict(d_model=512, n_layers=6, n_heads=8)}


def matmul_gflops(threads: int, n: int = 1024, seconds: float = 3.0) -> float:
    """fp32 matmul rate on `threads` threads: the ceiling the training step is compared against."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def plain_loop(mcfg: ModelConfig, tcfg: TrainConfig, tokens_dir: Path, compiled: bool, warmup: int) -> list[float]:
    """tokens/s of each log window of a plain single-process loop (no Ray, no DDP)."""
    torch.set_num_threads(tcfg.cpus_per_worker)
    torch.manual_seed(tcfg.seed)
    model = Transformer(mcfg)
    if compiled:                     # what train.parallel.compile does: each block, and the loss
        for i, block in enumerate(model.layers):
            model.layers[i] = torch.compile(block)
    loss_fn = torch.compile(lm_loss) if compiled else lm_loss
    optimizer = make_optimizer(model, tcfg)
    data = PackedTokens(tokens_dir, "train", tcfg.seq_len)
    rates, window_start = [], time.perf_counter()
    for step in range(tcfg.max_steps):
        x, y = data.batch(tcfg.batch_size, tcfg.seed, step, 0)
        loss_fn(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % tcfg.log_every == 0:
            now = time.perf_counter()
            rates.append(tcfg.batch_size * tcfg.seq_len * tcfg.log_every / (now - window_start))
            window_start = now
    return rates[warmup:]


def framework_run(mcfg: ModelConfig, tcfg: TrainConfig, work: Path, compiled: bool, warmup: int) -> list[float]:
    """tokens/s of each log window of `run_pretrain` with one Ray Train worker."""
    from pipelines.training import run_pretrain

    tcfg = with_compile(tcfg, compiled)
    name = f"bench-{mcfg.d_model}-{'c' if compiled else 'e'}-{int(time.time())}"
    result = run_pretrain(mcfg, tcfg, work / "tokens", work / "tokenizer", work / "runs", name=name)
    rows = [json.loads(line) for line in Path(result.history_path).read_text().splitlines()]
    return [r["tokens_per_s"] for r in rows if "tokens_per_s" in r][warmup:]


def with_compile(tcfg: TrainConfig, compiled: bool) -> TrainConfig:
    """The framework's own torch.compile switch (train.parallel.compile: each block and the loss)."""
    if not compiled:
        return tcfg
    return dataclasses.replace(tcfg, parallel=dataclasses.replace(tcfg.parallel, compile=True))


def bench_configs(size: str, vocab: int, args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The model and the one-worker training config both loops run for `size`."""
    mcfg = ModelConfig(vocab_size=vocab, max_seq_len=args.seq_len, **SIZES[size])
    tcfg = TrainConfig(seq_len=args.seq_len, batch_size=args.batch_size, num_workers=1,
                       cpus_per_worker=args.threads, max_steps=args.steps * args.log_every,
                       warmup_steps=1, log_every=args.log_every, eval_every=args.steps * args.log_every,
                       eval_tokens=args.seq_len, keep_checkpoints=1)
    return mcfg, tcfg


def bench_tokens(prefix: str) -> tuple[Path, int]:
    """A fresh work folder holding byte-level tiny Shakespeare tokens, and their vocabulary size."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    shakespeare_tokens(work)
    return work, json.loads((work / "tokens" / "meta.json").read_text())["vocab_size"]


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Run-shape options shared with benchmarks/worker_niceness.py."""
    p.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="logged windows per run (log_every steps each)")
    p.add_argument("--log-every", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="windows left out at the start (compilation, caches)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    add_run_args(p)
    p.add_argument("--repeats", type=int, default=2, help="framework runs per row, each between two plain runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "cpu_throughput.json"))
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    from cluster import connect

    work, vocab = bench_tokens("bespoke-cpu-bench-")
    peak = matmul_gflops(args.threads)       # before Ray starts: its start-up processes would take CPU
    connect(num_cpus=args.threads)
    print(f"fp32 matmul on {args.threads} threads: {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for size in args.sizes:
        mcfg, tcfg = bench_configs(size, vocab, args)
        flops_per_token = train_flops_per_token(mcfg, args.seq_len)
        for mode in args.modes:
            compiled = mode == "compile"
            # plain, framework, plain, framework, ..., plain: the machine's speed drifts (shared
            # host), so each framework run is compared with the mean of the plain runs on either
            # side of it, and the row reports the median of those ratios.
            def plain_run() -> float:
                return statistics.median(plain_loop(mcfg, tcfg, work / "tokens", compiled, args.warmup))

            plain_runs, framework_runs, ratios = [plain_run()], [], []
            for _ in range(args.repeats):
                framework_runs.append(statistics.median(framework_run(mcfg, tcfg, work, compiled, args.warmup)))
                plain_runs.append(plain_run())
                ratios.append(framework_runs[-1] / statistics.mean(plain_runs[-2:]))
            plain, framework = statistics.mean(plain_runs), statistics.median(framework_runs)
            row = {"size": size, "params": count_params(mcfg), "mode": mode,
                   "plain_tokens_per_s": plain, "plain_runs": plain_runs,
                   "framework_tokens_per_s": framework, "framework_runs": framework_runs,
                   "framework_over_plain": statistics.median(ratios), "ratios": ratios,
                   "plain_gflops": plain * flops_per_token / 1e9, "framework_gflops": framework * flops_per_token / 1e9}
            row["plain_of_peak"] = row["plain_gflops"] / peak
            row["framework_of_peak"] = row["framework_gflops"] / peak
            rows.append(row)
            print(f"{size} {mode}: plain {plain:,.0f} tok/s (runs {', '.join(f'{v:,.0f}' for v in plain_runs)}; "
                  f"{row['plain_of_peak']:.0%} of matmul), framework {framework:,.0f} tok/s "
                  f"({row['framework_of_peak']:.0%}), ratio {row['framework_over_plain']:.3f} "
                  f"(each run: {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    peak_end = matmul_gflops(args.threads)
    load = os.getloadavg()[0]
    result = {"matmul_gflops": peak, "matmul_gflops_end": peak_end, "threads": args.threads, "load_avg_1m_end": load,
              "command": "python " + " ".join(["benchmarks/cpu_throughput.py", *(argv or sys.argv[1:])]), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    if not args.no_write:
        write_results(result)


def write_results(result: dict) -> None:
    lines = ["## CPU training throughput: framework worker vs plain PyTorch loop (`benchmarks/cpu_throughput.py`)", "",
             f"Command: `{result['command']}`", "",
             f"Machine: x86_64, {result['threads']} torch threads, fp32 matmul measured in the same script "
             f"{result['matmul_gflops']:.1f} GFLOP/s at the start, before Ray starts ({result['matmul_gflops_end']:.1f} at "
             f"the end: the host's speed drifts, and each % of matmul uses the start figure); load average "
             f"{result['load_avg_1m_end']:.1f} at the end; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Byte-level tiny Shakespeare, "
             "seq_len 256, batch 16, AdamW, grad clipping; median tokens/s over logged windows after warm-up. "
             "Each row alternates plain loop and framework runs (plain first and last); each framework run "
             "is divided by the mean of the plain runs on either side, and framework / plain is the median "
             "of those ratios (each shown). `plain` is the mean of all plain runs.", "",
             "| model | params | mode | plain tok/s (runs) | framework tok/s (runs) | framework / plain (each run) | plain % of matmul | framework % of matmul |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        plain_runs = ", ".join(f"{v:,.0f}" for v in r["plain_runs"])
        framework_runs = ", ".join(f"{v:,.0f}" for v in r["framework_runs"])
        ratios = ", ".join(f"{v:.3f}" for v in r["ratios"])
        lines.append(f"| {r['size']} | {r['params'] / 1e6:.1f}M | {r['mode']} | {r['plain_tokens_per_s']:,.0f} ({plain_runs}) | "
                     f"{r['framework_tokens_per_s']:,.0f} ({framework_runs}) | {r['framework_over_plain']:.3f} ({ratios}) | "
                     f"{r['plain_of_peak']:.0%} | {r['framework_of_peak']:.0%} |")
    replace_section("cpu_throughput", "\n".join(lines))


if __name__ == "__main__":
    main()
