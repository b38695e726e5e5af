"""Evaluation benchmark: the full standard task sets through bespoke's lm-eval adapter, timed.

    python benchmarks/eval_benchmarks.py --max-minutes 30          # a randomly initialised model
    python benchmarks/eval_benchmarks.py --checkpoint runs/demo/tune/.../model --max-minutes 60
    # On a GPU machine (batch 256 by default there), the three big sets in one command:
    python benchmarks/eval_benchmarks.py --device cuda --merge --tasks mmlu_local hellaswag_local gsm8k_local \
        --data-dir /path/to/shared/data --max-minutes 8
    # A smoke run that leaves the recorded figures alone:
    python benchmarks/eval_benchmarks.py --limit 5 --json /tmp/e.json --results-md /tmp/R.md

Every task runs on all its examples (unless --limit, which the section then states), one after
another in this process through `run_eval` (so the figures are what `bespoke eval` reports),
cheapest first; once --max-minutes have passed no further task starts, and RESULTS.md says which
were skipped. Without --checkpoint it evaluates a randomly initialised model (tokenizer trained
on tinyshakespeare), whose scores should sit at chance. `--device cuda` puts the model on the
GPU (eval.num_gpus=1); generation (GSM8K) runs batch-size prompts at a time through the KV
cache. Writes --json (benchmarks/eval_results.json) and the "Evaluation" section of --results-md
(benchmarks/RESULTS.md, between markers, so other sections are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
ORDER = ["truthfulqa_mc1_local", "truthfulqa_mc2_local", "arc_challenge_local", "arc_easy_local",
         "gsm8k_local", "mmlu_local", "hellaswag_local"]
START, END = "<!-- eval_benchmarks:start -->", "<!-- eval_benchmarks:end -->"


def random_checkpoint(out: Path, d_model: int, n_layers: int, seq_len: int, vocab: int, data: Path) -> Path:
    """Save a randomly initialised model with a BPE tokenizer trained on tinyshakespeare."""
    import torch

    from modeling.checkpoint import save_model
    from modeling.config import ModelConfig
    from modeling.tokenizer import Tokenizer
    from modeling.transformer import Transformer

    if (out / "model.safetensors").is_file():     # the same random model across invocations
        return out
    tok = Tokenizer.train((data / "text/tinyshakespeare.txt").read_text().split("\n\n"), vocab_size=vocab)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers, n_heads=4, max_seq_len=seq_len)
    save_model(out, Transformer(cfg).eval(), tok)
    return out


def run(args) -> dict:
    from pipelines.evaluation import EvalConfig, run_eval

    work = Path(args.work_dir)
    data = Path(args.data_dir)
    ckpt = Path(args.checkpoint) if args.checkpoint else random_checkpoint(
        work / "random_model", args.d_model, args.n_layers, args.seq_len, args.vocab, data)
    start, done, skipped = time.perf_counter(), {}, []
    previous = Path(args.json)
    if args.merge and previous.is_file():   # keep tasks an earlier invocation measured on this model
        done = {t: m for t, m in json.loads(previous.read_text())["tasks"].items() if t not in args.tasks}
    for task in args.tasks:
        if time.perf_counter() - start > args.max_minutes * 60:
            skipped.append(task)
            continue
        cfg = EvalConfig(tasks=[task], benchmarks_dir=str(data / "benchmarks"), batch_size=args.batch_size,
                         max_gen_toks=args.max_gen_toks, num_cpus=args.threads, limit=args.limit,
                         num_gpus=1 if args.device == "cuda" else 0)
        res = run_eval(cfg, ckpt, None, None, work / task, progress=print)
        done[task] = {**res["tasks"][task], "seconds": res["timing"]["tasks_s"][task],
                      "device": args.device_name, "limit": args.limit}
        partial = {"checkpoint": str(ckpt), "tasks": done, "skipped": skipped}
        previous.write_text(json.dumps(partial, indent=2))
    return {"checkpoint": str(ckpt), "tasks": done, "skipped": skipped,
            "total_s": round(time.perf_counter() - start, 1), "merged": args.merge}


def device_name(device: str) -> str:
    """`cpu`, or the GPU's name; exits when CUDA is asked for and absent (never a silent CPU run)."""
    import torch

    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here")
    return torch.cuda.get_device_name(0)


def section(out: dict, args, command: str) -> str:
    from pipelines.evaluation.tables import fmt, metric_name

    load = os.getloadavg()
    model = f"`{args.checkpoint}`" if args.checkpoint else (
        f"randomly initialised (d_model {args.d_model}, {args.n_layers} layers, max_seq_len {args.seq_len}, "
        f"BPE vocab {args.vocab} trained on tinyshakespeare)")
    lines = [START, "## Evaluation: full benchmark task sets (`benchmarks/eval_benchmarks.py`)", "",
             f"Command: `{command}`", "",
             f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores (load average {load[0]:.1f} at the "
             f"end), torch threads {args.threads}, "
             + (f"model on {args.device_name}; " if args.device == "cuda" else "no GPU; ")
             + f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"Model: {model}. "
             + ("Every example of each task (no `limit`)" if args.limit is None else
                f"Only the first {args.limit} examples of each task (`--limit {args.limit}`; per subject for "
                "MMLU), a smoke run rather than the benchmark figures")
             + "; lm-eval's prompts and few-shot "
             f"settings (MMLU and GSM8K 5-shot; GSM8K generates up to {args.max_gen_toks} tokens), batch size "
             f"{args.batch_size}; contexts longer than max_seq_len are left-truncated.", "",
             "| task | metric | n | score ± stderr | acc_norm | chance | z vs chance | seconds | device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, m in out["tasks"].items():
        z = (m["acc"] - m["chance"]) / m["acc_stderr"] if m.get("acc_stderr") else None
        norm = fmt(m.get("acc_norm")) if "acc_norm" in m else "n/a"
        lines.append(f"| {task} | {metric_name(m)} | {m['n']} | {fmt(m['acc'])} ± {fmt(m['acc_stderr'])} | "
                     f"{norm} | {m['chance']:.3f} | {fmt(z, 2)} | {m['seconds']} | {m.get('device', 'cpu')} |")
    if out.get("merged"):
        lines += ["", "This invocation ran the tasks named in the command; the other rows are kept from an "
                  "earlier invocation on the same model (`--merge`); see the commands listed in the text."]
    lines += ["", "Seconds: wall time of each task's job (model and dataset load, prompt building, scoring); on a "
              "machine shared with other engineers' test runs (see the load average) they vary with the load and "
              "are an upper bound. z: (score - chance) / stderr. A random model ranks answers by token count, not "
              "content, so raw acc drifts from chance where the right answer's length is unusual "
              "(ARC-Challenge: right answers are longer); acc_norm corrects for length.",
              "", f"Total {out['total_s']} s. "
              + (f"Not run (time cap of {args.max_minutes} min reached): {', '.join(out['skipped'])}."
                 if out["skipped"] else "Every task ran on its full set." if args.limit is None
                 else f"Every task ran on its first {args.limit} examples."), "", END]
    return "\n".join(lines)


def write_results_md(text: str, path: Path) -> None:
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    if START in old and END in old:
        new = old[:old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="model folder (model.safetensors + tokenizer); default: random init")
    p.add_argument("--tasks", nargs="+", default=ORDER, choices=ORDER)
    p.add_argument("--max-minutes", type=float, default=30.0, help="start no task after this long")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs")
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (default 32 on cpu, 256 on cuda)")
    p.add_argument("--limit", type=int, help="examples per task (per MMLU subject): a smoke run")
    p.add_argument("--data-dir", default=os.environ.get("BESPOKE_SHARED_DATA", str(DEFAULT_DATA)),
                   help="folder with benchmarks/ and text/tinyshakespeare.txt (default ../shared/data)")
    p.add_argument("--json", default=str(REPO / "benchmarks/eval_results.json"), help="results JSON to write")
    p.add_argument("--results-md", default=str(REPO / "benchmarks/RESULTS.md"), help="RESULTS.md to update")
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--work-dir", default="/tmp/bespoke_eval_benchmarks")
    p.add_argument("--merge", action="store_true",
                   help="keep the other tasks' figures from --json (same model)")
    args = p.parse_args(argv)
    if not (Path(args.data_dir) / "benchmarks").is_dir():
        sys.exit(f"{args.data_dir}/benchmarks is absent: pass --data-dir (the folder with benchmarks/)")
    args.batch_size = args.batch_size or (256 if args.device == "cuda" else 32)
    args.device_name = device_name(args.device)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    command = "python benchmarks/eval_benchmarks.py " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:]))
    out = run(args)
    write_results_md(section(out, args, command.strip()), Path(args.results_md))
    print(f"wrote {args.json} and {args.results_md}")


if __name__ == "__main__":
    main()
