"""The run report: `runs/<name>/report.md` with every stage's numbers, a loss curve, and where each
artifact is. Built only from the JSON and history files the stages wrote, so it can be rebuilt
at any time: `python -m pipelines.report runs/demo`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _history(path: Path) -> list[dict]:
    """history.jsonl rows, keeping the last row per step (a resumed run rewrites a few steps)."""
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def plot_loss_curve(history: list[dict], baseline: float | None, path: Path) -> Path | None:
    """Train and validation loss against step, with the unigram baseline as a dashed line."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="train loss")
    val = [r for r in history if "val_loss" in r]
    ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label=f"unigram baseline ({baseline:.2f})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("Pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _curation_section(report: dict) -> list[str]:
    lines = ["## Curation", "",
             f"{report.get('input_docs')} documents in, {report.get('kept_docs')} kept "
             f"({report.get('train_docs')} train / {report.get('val_docs')} validation), "
             f"{report.get('errored_docs', 0)} errored.", "",
             "| step | in | kept | dropped | errored |", "|---|---|---|---|---|"]
    for s in report.get("steps", []):
        lines.append(f"| {s['step']} | {s['in']} | {s['kept']} | {s['dropped']} | {s['errored']} |")
    if report.get("dropped"):
        lines += ["", "Drop reasons: " + ", ".join(f"`{k}` {v}" for k, v in report["dropped"].items())]
    if report.get("pii_replacements"):
        lines += ["", "PII replaced: " + ", ".join(f"{k} {v}" for k, v in report["pii_replacements"].items())]
    if "funnel.png" in report.get("figures", []):
        lines += ["", "![documents left after each step](curated/funnel.png)", "",
                  "Drop reasons, document length before and after, languages and PII: `curated/report.md`."]
    return lines + [""]


def _eval_section(evals: dict, baseline: float | None, root: Path) -> list[str]:
    from pipelines.evaluation.tables import fmt, metric_name

    lines = ["## Evaluation", "", f"Model: {evals.get('model', {}).get('source')} "
             f"(`{evals.get('model', {}).get('model_dir')}`)", ""]
    if evals.get("perplexity") is not None:
        lines.append(f"Held-out perplexity **{evals['perplexity']:.2f}** (loss {evals['val_loss']:.3f}"
                     + (f"; unigram baseline {baseline:.3f}" if baseline is not None else "")
                     + f"), {fmt(evals.get('bits_per_byte'), 4)} bits per byte.")
    for task, r in (evals.get("tasks") or {}).items():
        norm = f", acc_norm {fmt(r['acc_norm'])}" if "acc_norm" in r else ""
        lines.append(f"- lm-eval `{task}`: {metric_name(r)} {fmt(r.get('acc'))} (± {fmt(r.get('acc_stderr'))}){norm}, "
                     f"n={r.get('n')}, chance {r.get('chance', 0.25):.2f}")
    if (root / "eval" / "compare.md").is_file():
        lines += ["", "Checkpoints side by side (`bespoke eval --checkpoint ...`): `eval/compare.md`."]
    return lines + [""]


def write_run_report(root: str | Path, timings: dict | None = None) -> Path:
    root = Path(root)
    curated = _load(root / "curated" / "report.json")
    tokens = _load(root / "tokens" / "meta.json")
    train = _load(root / "train" / "result.json")
    tune = _load(root / "tune" / "result.json")
    evals = _load(root / "eval" / "results.json")
    samples = _load(root / "generate" / "samples.json")
    baseline = tokens.get("unigram_val_loss") if tokens else None

    lines = [f"# Run `{root.name}`", ""]
    if timings:
        lines += ["| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()] + [""]
    if curated:
        lines += _curation_section(curated)
    if tokens:
        lines += ["## Tokenizer", "",
                  f"Byte-level BPE, vocabulary {tokens['vocab_size']}; {tokens['train']['tokens']:,} train and "
                  f"{tokens['val']['tokens']:,} validation tokens ({tokens.get('chars_per_token', 0):.2f} chars/token).",
                  f"Unigram baseline validation loss: **{baseline:.3f}** nats/token.", ""]
    if train:
        m = train["metrics"]
        plot = plot_loss_curve(_history(Path(train["history_path"])), baseline, root / "loss_curve.png")
        lines += ["## Pretraining", "",
                  f"Final validation loss **{m['val_loss']:.3f}** (unigram baseline {baseline:.3f}) after "
                  f"{m['step']} steps, {m['tokens']:,} tokens; last logged {m['tokens_per_s']:,.0f} tokens/s.", ""]
        if plot:
            lines += [f"![loss curve]({plot.name})", ""]
    if tune:
        b = tune["best_config"]
        lines += ["## Tune", "",
                  f"{len(tune['trials'])} trials ({_search_label(root)}). Best: lr={b['lr']:.3g}, batch_size={b['batch_size']}, "
                  f"val_loss {tune['best_metrics']['val_loss']:.3f}. Full table and plot: `tune/report.md`.", ""]
    if evals:
        lines += _eval_section(evals, baseline, root)
    if samples:
        lines += ["## Samples", "", f"temperature {samples['config']['temperature']}, "
                  f"top_k {samples['config']['top_k']}, top_p {samples['config']['top_p']}", ""]
        for s in samples["samples"]:
            lines += [f"> **{s['prompt']}**{s['completion']}", ""]
    lines += ["## Artifacts", "",
              "| what | where |", "|---|---|",
              "| resolved config | `config.yaml` |",
              "| demo corpus (WARC) | `data/demo.warc.gz` |",
              "| curated parquet, counts | `curated/train/`, `curated/val/`, `curated/report.json` |",
              "| tokenizer | `tokenizer/tokenizer.json` |",
              "| packed tokens | `tokens/train/shard-*.bin`, `tokens/val/shard-*.bin`, `tokens/manifest.json`, `tokens/meta.json` |",
              f"| pretraining checkpoints, TensorBoard | `{_rel(train['run_path'], root) if train else 'train/'}` |",
              f"| best pretrained model (safetensors) | `{_rel(train['model_dir'], root) if train else '-'}` |",
              "| Tune experiment, report | `tune/experiment/`, `tune/report.md` |",
              "| evaluation | `eval/results.json`, `eval/report.md` |",
              "| samples | `generate/samples.json` |", ""]
    out = root / "report.md"
    out.write_text("\n".join(lines))
    return out


def _search_label(root: Path) -> str:
    """'optuna search, asha scheduler' from the run's resolved config.yaml (the search the run used)."""
    import yaml

    path = root / "config.yaml"
    tune = (yaml.safe_load(path.read_text()) or {}).get("tune", {}) if path.is_file() else {}
    return f"{tune.get('search', 'random')} search, {tune.get('scheduler', 'asha')} scheduler"


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


if __name__ == "__main__":
    print(write_run_report(sys.argv[1]))
