"""ASHA against a full grid over the same space: best validation loss and training steps spent.

    python benchmarks/tune_asha_vs_grid.py [--work /tmp/tune_bench] [--no-write]

Tiny Shakespeare, byte-level (one token per character, loss in nats per character), a 2-layer
d_model=64 decoder. The space: 4 learning rates (log-spaced) x 3 batch sizes (lr scaled by the
sqrt rule from batch 16), each trial up to MAX_STEPS optimizer steps with a validation report every
EVAL_EVERY. The grid runs every trial to the end (FIFO); ASHA runs the same grid points (started in
a seeded shuffled order, tuning/space.py) and stops the lagging ones at its rungs. Both searches
run in this process on the same Ray, one after the other, 2 one-worker trials at a time.
Goal (issue 6): ASHA's best within 2% of the grid's best at no more than a third of its steps. Writes the `tune` section of benchmarks/RESULTS.md.
Takes about 10 minutes on 2 idle cores; the load average is recorded beside the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import replace_section  # noqa: E402
from _shakespeare import shakespeare_tokens  # noqa: E402

from modeling.config import ModelConfig  # noqa: E402
from pipelines.training.config import TrainConfig  # noqa: E402
from tuning.config import TuneConfig  # noqa: E402

MAX_STEPS, EVAL_EVERY = 160, 10
MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
TRAIN = TrainConfig(seq_len=64, batch_size=16, max_steps=MAX_STEPS, warmup_steps=16, eval_tokens=16_384,
                    num_workers=1, keep_checkpoints=1)
SPACE = dict(search="grid", grid_points=4, lr_min=1e-3, lr_max=3e-2, batch_sizes=[8, 16, 32],
             max_steps=MAX_STEPS, eval_every=EVAL_EVERY, max_concurrent_trials=2)


def run(name: str, scheduler: str, work: Path) -> dict:
    from tuning.search import run_tune

    cfg = TuneConfig(scheduler=scheduler, grace_period=1, reduction_factor=4, **SPACE)
    start = time.perf_counter()
    result = run_tune(cfg, MODEL, TRAIN, work / "tokens", work / "tokenizer", work / name,
                      progress=lambda line: None)
    wall = time.perf_counter() - start
    steps = sum(t["step"] or 0 for t in result.trials)
    print(f"{name}: best val_loss {result.best_metrics['val_loss']:.4f} {result.best_config}, "
          f"{steps} steps over {len(result.trials)} trials, {wall:.0f} s")
    return {"best": result.best_metrics["val_loss"], "config": result.best_config, "steps": steps,
            "trials": len(result.trials), "stopped": sum(1 for t in result.trials if (t["step"] or 0) < MAX_STEPS),
            "wall": wall, "errors": [t["error"] for t in result.trials if t["error"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/bespoke_tune_bench")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.work)
    shakespeare_tokens(work)
    from cluster import connect

    connect(num_cpus=2)
    load_before = os.getloadavg()[0]
    grid = run("grid", "fifo", work)
    asha = run("asha", "asha", work)
    load_after = os.getloadavg()[0]
    gap = asha["best"] / grid["best"] - 1
    ratio = asha["steps"] / grid["steps"]
    verdict = "met" if gap <= 0.02 and ratio <= 1 / 3 else "not met"
    body = "\n".join([
        "## Tune: ASHA against a full grid (tiny Shakespeare, byte-level)", "",
        f"`python benchmarks/tune_asha_vs_grid.py`: {SPACE['grid_points']} learning rates "
        f"({SPACE['lr_min']:g}-{SPACE['lr_max']:g}, log-spaced) x batch sizes {SPACE['batch_sizes']} "
        f"(sqrt lr scaling), up to {MAX_STEPS} steps per trial, a report every {EVAL_EVERY}; "
        f"2-layer d_model=64 decoder; ASHA grace 1 report, reduction factor 4, grid points started in a seeded "
        f"shuffled order; 2 one-worker trials at a time "
        f"on 2 CPU cores. Validation loss in nats per character.", "",
        "| search | best val loss | best config | steps spent | trials (stopped early) | wall |",
        "|---|---|---|---|---|---|",
        f"| grid (every trial to the end) | {grid['best']:.4f} | {grid['config']} | {grid['steps']} | "
        f"{grid['trials']} ({grid['stopped']}) | {grid['wall']:.0f} s |",
        f"| ASHA over the same grid | {asha['best']:.4f} | {asha['config']} | {asha['steps']} | "
        f"{asha['trials']} ({asha['stopped']}) | {asha['wall']:.0f} s |", "",
        f"ASHA's best is {gap:+.2%} from the grid's, at {ratio:.0%} of its steps: goal (within 2% at no "
        f"more than a third of the steps) {verdict}. Load average {load_before:.1f} before, "
        f"{load_after:.1f} after (the machine is shared; wall times are noisy, steps and losses are not)."
        + (f" Trial errors: {grid['errors'] + asha['errors']}." if grid["errors"] or asha["errors"] else "")])
    print(body)
    if not args.no_write:
        replace_section("tune", body)


if __name__ == "__main__":
    main()
