"""Markdown for evaluation results: one checkpoint's report, and checkpoints side by side.

    Path("eval/report.md").write_text(single_report(results))
    compare({"pretrain": results_a, "tune-best": results_b}, "eval/compare.md")
    compare(["runs/a/eval", "runs/b/eval"])          # folders (or files) holding results.json

Every task row shows its chance level (the score of a uniform guess). A score within two
standard errors of chance is marked `~` (indistinguishable from guessing at this sample size).
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def score_cell(entry: dict) -> str:
    """`0.412 ± 0.010` plus ` ~` when the score is within 2 standard errors of chance."""
    acc, se = entry.get("acc"), entry.get("acc_stderr")
    cell = f"{fmt(acc)} ± {fmt(se)}" if se is not None else fmt(acc)
    if acc is not None and se and abs(acc - entry.get("chance", 0.0)) <= 2 * se:
        cell += " ~"
    return cell


def metric_name(entry: dict) -> str:
    """`acc`, or `exact_match (strict-match)` for a metric behind a filter."""
    metric, _, filt = entry.get("metric", "acc,none").partition(",")
    return metric if filt in ("", "none") else f"{metric} ({filt})"


def single_report(results: dict) -> str:
    """One checkpoint: held-out loss against the unigram bar, then one row per task."""
    lines = [f"# Evaluation of `{results['checkpoint']}`", ""]
    if "perplexity" in results:
        lines += ["| held-out | loss (nats/token) | perplexity | bits/byte | tokens |", "|---|---|---|---|---|",
                  f"| model | {results['val_loss']:.4f} | {results['perplexity']:.2f} | "
                  f"{fmt(results.get('bits_per_byte'), 4)} | {results['val_tokens']:,} |"]
        if results.get("unigram_val_loss") is not None:
            u = results["unigram_val_loss"]
            lines.append(f"| unigram baseline | {u:.4f} | {math.exp(u):.2f} | | |")
        lines.append("")
    lines += ["| task | metric | n | score | acc_norm | chance | seconds |", "|---|---|---|---|---|---|---|"]
    seconds = results.get("timing", {}).get("tasks_s", {})
    for name, m in results["tasks"].items():
        norm = f"{fmt(m['acc_norm'])} ± {fmt(m.get('acc_norm_stderr'))}" if "acc_norm" in m else "n/a"
        lines.append(f"| {name} | {metric_name(m)} | {m['n']} | {score_cell(m)} | {norm} | "
                     f"{m['chance']:.3f} | {seconds.get(name, '')} |")
    lines += ["", "`~`: within 2 standard errors of chance.",
              f"lm-eval {results.get('lm_eval_version')}; total {results['timing']['total_s']} s", ""]
    return "\n".join(lines)


def _load(item) -> dict:
    if isinstance(item, dict):
        return item
    path = Path(item)
    return json.loads((path / "results.json" if path.is_dir() else path).read_text())


def compare(runs: dict | list, out_path: str | Path | None = None) -> str:
    """One table, a column per checkpoint: perplexity, bits/byte, then each task's score and chance.

    `runs` maps a label to a results dict or a folder/file with results.json (a list is labelled
    by folder name). Returns the markdown, also written to out_path when given.
    """
    if not isinstance(runs, dict):
        runs = {Path(p).name if not isinstance(p, dict) else p["checkpoint"]: p for p in runs}
    loaded = {label: _load(r) for label, r in runs.items()}
    labels = list(loaded)
    lines = ["| | chance | " + " | ".join(labels) + " |", "|---" * (len(labels) + 2) + "|"]
    for key, title in (("perplexity", "held-out perplexity"), ("bits_per_byte", "held-out bits/byte")):
        if any(r.get(key) is not None for r in loaded.values()):
            lines.append(f"| {title} | | " + " | ".join(fmt(r.get(key), 3) for r in loaded.values()) + " |")
    tasks = list(dict.fromkeys(t for r in loaded.values() for t in r.get("tasks", {})))
    for task in tasks:
        entries = [r.get("tasks", {}).get(task) for r in loaded.values()]
        first = next(e for e in entries if e)
        cells = [score_cell(e) if e else "" for e in entries]
        lines.append(f"| {task} ({metric_name(first)}, n={first['n']}) | {first['chance']:.3f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Scores ± standard error; `~`: within 2 standard errors of chance.", ""]
    text = "\n".join(lines)
    if out_path is not None:
        Path(out_path).write_text(text)
    return text
