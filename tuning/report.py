"""Write the Tune experiment report: a table of trials, the best config, and a validation-loss plot.

    write_tune_report(result, "runs/demo/tune")      # -> report.md, val_loss.png, trials.csv

Reads each trial's progress.csv from Tune's own experiment folder, so the plot shows what Tune
recorded (including trials ASHA stopped early).
"""
from __future__ import annotations

import csv
from pathlib import Path

from tuning.search import TuneResult


def _trial_curves(result: TuneResult, metric: str) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    for trial in result.trials:
        progress = Path(trial["path"]) / "progress.csv"
        if not progress.is_file():
            continue
        with open(progress) as fh:
            rows = [r for r in csv.DictReader(fh) if r.get(metric) not in (None, "")]
        label = f"lr={trial['lr']:.2g} bs={trial['batch_size']}"
        curves[label] = [(int(float(r["step"])), float(r[metric])) for r in rows]
    return curves


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path, ylabel: str) -> Path | None:
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title("Tune trials (ASHA stops the lagging ones early)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_tune_report(result: TuneResult, out_dir: str | Path, metric: str = "val_loss") -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["trial", "lr", "batch_size", metric, "loss", "step", "iterations", "tokens_per_s", "error"]
    with open(out_dir / "trials.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.trials)
    plot = plot_curves(_trial_curves(result, metric), out_dir / f"{metric}.png", metric)
    lines = ["# Tune report", "",
             f"Best: lr={result.best_config['lr']:.3g}, batch_size={result.best_config['batch_size']} "
             f"({metric} {result.best_metrics[metric]:.4f})", "",
             f"Experiment folder (for `Tuner.restore` / `ExperimentAnalysis`): `{result.experiment_path}`", "",
             "| trial | lr | batch size | val loss | steps | stopped early | tokens/s |",
             "|---|---|---|---|---|---|---|"]
    max_step = max((t["step"] or 0) for t in result.trials)
    for t in result.trials:
        val = f"{t[metric]:.4f}" if t[metric] is not None else "-"
        early = "yes" if (t["step"] or 0) < max_step else "no"
        tps = f"{t['tokens_per_s']:,.0f}" if t["tokens_per_s"] else "-"
        lines.append(f"| {t['trial']} | {t['lr']:.3g} | {t['batch_size']} | {val} | {t['step']} | {early} | {tps} |")
    if plot:
        lines += ["", f"![{metric} per trial]({plot.name})"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return out_dir / "report.md"
