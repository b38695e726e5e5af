"""Does Ray's worker niceness slow one CPU training worker? An alternating A/B, same model and data.

    python benchmarks/worker_niceness.py                          # 20M eager and compiled, niceness 15 vs 0
    python benchmarks/worker_niceness.py --sizes 5M --modes eager --steps 6   # quicker

Ray starts its worker processes at niceness 15 (`RAY_worker_niceness`), below its own raylet, GCS
and dashboard (niceness 0). On a laptop-sized machine those daemons share the cores with the one
training worker, and a 2-thread torch op waits for its slower thread, so the question is whether the
default costs the worker throughput. For each model size and mode this script runs, in one process,

    plain, framework@A, plain, framework@B, plain, framework@B, plain, framework@A, plain

(A, B = the two niceness values; Ray is restarted with RAY_worker_niceness set before each framework
run, and the niceness a Ray task sees is recorded). Each framework run is divided by the mean of the
plain-loop runs on either side of it (benchmarks/cpu_throughput.py's plain loop: the same model,
optimizer, batches and threads), and the A-B-B-A order cancels a linear drift of the host's speed.
Writes JSON and the `worker_niceness` section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import replace_section  # noqa: E402
from cpu_throughput import (SIZES, add_run_args, bench_configs, bench_tokens, framework_run,  # noqa: E402
                            matmul_gflops, plain_loop)


def restart_ray(niceness: int, num_cpus: int) -> int:
    """(Re)start the embedded Ray with its workers at `niceness`; returns the niceness a task sees."""
    import ray

    from cluster import connect

    ray.shutdown()
    os.environ["RAY_worker_niceness"] = str(niceness)     # read by the raylet when it starts
    connect(num_cpus=num_cpus)
    return ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote())


def ab_row(size: str, mode: str, values: tuple[int, int], work: Path, vocab: int, args) -> dict:
    """plain, A, plain, B, plain, B, plain, A, plain: each framework run over its two plain neighbours."""
    mcfg, tcfg = bench_configs(size, vocab, args)
    compiled = mode == "compile"

    def plain() -> float:
        return statistics.median(plain_loop(mcfg, tcfg, work / "tokens", compiled, args.warmup))

    order = [values[0], values[1], values[1], values[0]]
    plain_runs, runs = [plain()], {v: [] for v in values}
    for niceness in order:
        seen = restart_ray(niceness, args.threads)
        tokens_per_s = statistics.median(framework_run(mcfg, tcfg, work, compiled, args.warmup))
        plain_runs.append(plain())
        ratio = tokens_per_s / statistics.mean(plain_runs[-2:])
        runs[niceness].append({"tokens_per_s": tokens_per_s, "ratio": ratio, "niceness_seen": seen})
        print(f"  {size} {mode} niceness {niceness} (task saw {seen}): {tokens_per_s:,.0f} tok/s, "
              f"ratio to plain {ratio:.3f}", flush=True)
    return {"size": size, "mode": mode, "plain_runs": plain_runs, "runs": {str(v): r for v, r in runs.items()},
            "mean_ratio": {str(v): statistics.mean(r["ratio"] for r in runs[v]) for v in values}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["20M"], choices=list(SIZES))
    p.add_argument("--niceness", nargs=2, type=int, default=[15, 0], metavar=("A", "B"),
                   help="the two RAY_worker_niceness values compared (Ray's default is 15)")
    add_run_args(p)
    p.set_defaults(steps=8)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "worker_niceness.json"))
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    work, vocab = bench_tokens("bespoke-niceness-bench-")
    peak = matmul_gflops(args.threads)
    restart_ray(args.niceness[0], args.threads)          # the plain loop always shares the host with Ray
    print(f"fp32 matmul on {args.threads} threads: {peak:.1f} GFLOP/s", flush=True)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    rows = [ab_row(size, mode, tuple(args.niceness), work, vocab, args) for size in args.sizes for mode in args.modes]
    result = {"matmul_gflops": peak, "matmul_gflops_end": matmul_gflops(args.threads), "threads": args.threads,
              "started_utc": started, "ended_utc": time.strftime("%H:%M", time.gmtime()),
              "command": "python " + " ".join(["benchmarks/worker_niceness.py", *(argv or sys.argv[1:])]), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    for row in rows:
        print(f"{row['size']} {row['mode']}: " + ", ".join(f"niceness {v}: {r:.3f}" for v, r in row["mean_ratio"].items()))
    if not args.no_write:
        write_results(result, args.niceness)


def write_results(result: dict, values: list[int]) -> None:
    a, b = values
    lines = ["## Ray worker niceness and one CPU worker's throughput (`benchmarks/worker_niceness.py`)", "",
             f"Command: `{result['command']}`", "",
             f"Machine: x86_64, {result['threads']} torch threads, fp32 matmul {result['matmul_gflops']:.1f} GFLOP/s at "
             f"the start, {result['matmul_gflops_end']:.1f} at the end; {result['started_utc']}-{result['ended_utc']} UTC. "
             "Order per row: plain, framework@A, plain, framework@B, plain, framework@B, plain, framework@A, plain; "
             "each framework run's tokens/s divided by the mean of the plain-loop runs on either side. "
             "A task's niceness is `os.nice(0)` inside a Ray task after each restart.", "",
             f"| model | mode | framework / plain at niceness {a} (runs) | at niceness {b} (runs) | "
             f"difference | each run's task saw its niceness | plain tok/s (runs) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ra, rb = r["runs"][str(a)], r["runs"][str(b)]
        each = lambda runs: ", ".join(f"{x['ratio']:.3f}" for x in runs)  # noqa: E731
        seen = "yes" if all(x["niceness_seen"] == v for v, runs in ((a, ra), (b, rb)) for x in runs) else "no"
        plain = ", ".join(f"{v:,.0f}" for v in r["plain_runs"])
        lines.append(f"| {r['size']} | {r['mode']} | {r['mean_ratio'][str(a)]:.3f} ({each(ra)}) | "
                     f"{r['mean_ratio'][str(b)]:.3f} ({each(rb)}) | "
                     f"{r['mean_ratio'][str(b)] - r['mean_ratio'][str(a)]:+.3f} | {seen} | "
                     f"{statistics.mean(r['plain_runs']):,.0f} ({plain}) |")
    replace_section("worker_niceness", "\n".join(lines))


if __name__ == "__main__":
    main()
