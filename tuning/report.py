"""Report on a Tune experiment from Tune's own files: a markdown report with plots and the best config.

    bespoke tune-report runs/demo/tune       # -> report.md, val_loss_curves.png, val_loss_vs_lr.png,
                                             #    val_loss_vs_batch_size.png, trials.csv, best.yaml

Reads every trial folder of <tune>/experiment/ (params.json, progress.csv, error.txt), so it works
on a finished, interrupted or still running search and needs no Ray. best.yaml is the run config
of the search with the best trial's train settings; `bespoke pretrain --config best.yaml` takes it
as is. The train section is also printed as a snippet to paste into another config.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

PARAMS = ("lr", "batch_size", "warmup_steps", "weight_decay")


def _tune_dir(path) -> Path:
    path = Path(path).resolve()
    return path.parent if path.name == "experiment" else path


def _float(value):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def error_summary(text: str) -> str:
    """One line from a trial's traceback: its last exception line and the last line of the message."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "failed"
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?", ln)]
    head = raised[-1] if raised else ""
    out = head if head == lines[-1] else f"{head} / {lines[-1]}".strip(" /")
    return out[:400]


def _trial_states(experiment: Path) -> dict[str, tuple[str, str]]:
    """Trial folder name -> (trial id, Tune status) from Tune's latest experiment state file."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return {}
    out = {}
    for entry in json.loads(states[-1].read_text()).get("trial_data", []):
        info = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        out[info.get("relative_logdir", "")] = (info.get("trial_id"), info.get("status"))
    return out


def load_trials(tune_dir, metric: str = "val_loss") -> list[dict]:
    """One dict per trial folder: its parameters (the latest, after any PBT change), curve, status."""
    trials = []
    experiment = Path(tune_dir) / "experiment"
    states = _trial_states(experiment)
    for folder in sorted(p for p in experiment.iterdir() if (p / "params.json").is_file()):
        params = json.loads((folder / "params.json").read_text())
        rows = []
        if (folder / "progress.csv").is_file() and (folder / "progress.csv").stat().st_size:
            with open(folder / "progress.csv") as fh:
                rows = [r for r in csv.DictReader(fh) if _float(r.get(metric)) is not None]
        last = rows[-1] if rows else {}
        for key in PARAMS:
            if _float(last.get(f"config/{key}")) is not None:
                params[key] = _float(last[f"config/{key}"])
        error = None
        if (folder / "error.txt").is_file():
            error = error_summary((folder / "error.txt").read_text())
        trials.append({
            "trial": states.get(folder.name, (None,))[0] or last.get("trial_id") or folder.name,
            "tune_status": states.get(folder.name, (None, None))[1],
            "folder": str(folder), **{k: params[k] for k in PARAMS if k in params},
            "batch_size": int(params["batch_size"]) if "batch_size" in params else None,
            "lr_peak": _float(last.get("lr_peak")), "grad_accum": _float(last.get("grad_accum")),
            metric: _float(last.get(metric)), "step": int(_float(last.get("step")) or 0),
            "curve": [(int(_float(r["step"])), _float(r[metric])) for r in rows],
            "checkpoint_path": last.get("checkpoint_path") or None, "error": error})
    return trials


def _plot(path: Path, title: str, xlabel: str, series: dict, logx: bool = False, line: bool = True) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in series.items():
        if points:
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label,
                    linestyle="-" if line else "none")
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="validation loss")
    if 1 < len(series) <= 16:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def best_train_section(best: dict, search: dict) -> dict:
    """The train settings of the best trial, as `bespoke pretrain` reads them."""
    section = {"lr": float(f"{best['lr_peak'] or best['lr']:.6g}"), "batch_size": int(best["batch_size"])}
    if best.get("grad_accum"):
        section["grad_accum"] = int(best["grad_accum"])
    train = search.get("train", {})
    warmup = best.get("warmup_steps")
    if warmup is not None:   # searched on the trial budget: keep its fraction for the full run
        frac = float(warmup) / search["tune"]["max_steps"]
        section["warmup_steps"] = max(1, round(frac * train.get("max_steps", search["tune"]["max_steps"])))
    if best.get("weight_decay") is not None:
        section["weight_decay"] = float(best["weight_decay"])
    return section


def write_tune_report(path, metric: str = "val_loss") -> dict:
    """Write the report files into the tune folder; returns {"report", "best", "best_yaml", "snippet"}."""
    import yaml

    tune_dir = _tune_dir(path)
    search = json.loads((tune_dir / "search.json").read_text()) if (tune_dir / "search.json").is_file() else {"tune": {}}
    trials = load_trials(tune_dir, metric)
    if not trials:
        raise FileNotFoundError(f"{tune_dir}/experiment has no Tune trials")
    done = [t for t in trials if t[metric] is not None]
    if not done:
        raise RuntimeError(f"no trial in {tune_dir} reported {metric}; errors: {[t['error'] for t in trials]}")
    best = min(done, key=lambda t: t[metric])
    max_step = search["tune"].get("max_steps") or max(t["step"] for t in trials)

    with open(tune_dir / "trials.csv", "w", newline="") as fh:
        cols = ["trial", *PARAMS, "lr_peak", "grad_accum", metric, "step", "error"]
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(trials)
    label = lambda t: f"{t['trial']} lr={t['lr']:.2g} bs={t['batch_size']}"  # noqa: E731
    plots = [
        _plot(tune_dir / "val_loss_curves.png", "Validation loss per trial", "step",
              {label(t): t["curve"] for t in trials}),
        _plot(tune_dir / "val_loss_vs_lr.png", "Final validation loss against learning rate",
              "learning rate (at train.batch_size)", {"trials": sorted((t["lr"], t[metric]) for t in done)},
              logx=True, line=False),
        _plot(tune_dir / "val_loss_vs_batch_size.png", "Final validation loss against batch size",
              "batch size", {"trials": sorted((t["batch_size"], t[metric]) for t in done)}, line=False),
    ]
    section = best_train_section(best, search)
    full = dict(search.get("run_config") or {})
    full["train"] = {**(full.get("train") or {}), **section}
    (tune_dir / "best.yaml").write_text(
        f"# Best of the Tune search in {tune_dir} ({metric} {best[metric]:.4f}): bespoke pretrain --config best.yaml\n"
        + yaml.safe_dump(full, sort_keys=False))
    snippet = yaml.safe_dump({"train": section}, sort_keys=False)

    lines = ["# Tune report", "",
             f"Best trial {best['trial']}: {metric} {best[metric]:.4f} at step {best['step']}", "",
             "Best configuration (the train section of `best.yaml`, which `bespoke pretrain --config` takes as is):",
             "", "```yaml", snippet.rstrip(), "```", "",
             f"Search: {search['tune'].get('search', '?')} search, {search['tune'].get('scheduler', '?')} scheduler; "
             f"Tune's experiment folder: `{tune_dir / 'experiment'}` (progress.csv, result.json, TensorBoard events "
             "per trial).", "",
             f"| trial | lr | lr trained | batch | {'warmup | ' if any('warmup_steps' in t for t in trials) else ''}"
             f"{'weight decay | ' if any('weight_decay' in t for t in trials) else ''}{metric} | steps | status |",
             "|---|---|---|---|" + ("---|" if any('warmup_steps' in t for t in trials) else "")
             + ("---|" if any('weight_decay' in t for t in trials) else "") + "---|---|---|"]
    for t in trials:
        status = (f"failed: {t['error'][:200]}" if t["error"] else
                  "finished" if t["step"] >= max_step else
                  {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused"}.get(t["tune_status"], "stopped early"))
        val = f"{t[metric]:.4f}" if t[metric] is not None else "-"
        peak = f"{t['lr_peak']:.3g}" if t["lr_peak"] else "-"
        cells = [t["trial"], f"{t['lr']:.3g}", peak, str(t["batch_size"])]
        if any("warmup_steps" in x for x in trials):
            cells.append(str(t.get("warmup_steps", "-")))
        if any("weight_decay" in x for x in trials):
            cells.append(str(t.get("weight_decay", "-")))
        cells += [val, str(t["step"]), status.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"![{p}]({p})" for p in plots]]
    (tune_dir / "report.md").write_text("\n".join(lines) + "\n")
    return {"report": str(tune_dir / "report.md"), "best": best, "best_yaml": str(tune_dir / "best.yaml"),
            "snippet": snippet}


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a `bespoke tune` folder (runs/<name>/tune) or its experiment/ folder")
    parser.add_argument("--metric", default="val_loss")


def cli(args) -> dict:
    out = write_tune_report(args.path, args.metric)
    print(f"# best config ({args.metric} {out['best'][args.metric]:.4f}); full run config: {out['best_yaml']}")
    print(out["snippet"], end="")
    return {"report": out["report"], "best_yaml": out["best_yaml"]}
