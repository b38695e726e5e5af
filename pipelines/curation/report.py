"""The curation report: counts per step, drop reasons, PII counts, errors, from the status column.

Every row carries its fate in `status` (kept / dropped:<step>:<reason> / errored:<step>:<error>
/ skipped:read:<record type>), so the report is a count over rows and
input_docs == kept_docs + dropped_docs + errored_docs holds by construction.

    counts = count_rows(ds)                       # one small aggregation over the dataset
    report = build_report(counts, step_order, extra)
    write_report(report, "out/")                  # out/report.json and out/report.md
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa

_MAX_ERROR_EXAMPLES = 20


def count_rows(ds) -> dict:
    """Status, split and counter-column totals over the whole dataset (a per-block partial sum)."""
    parts = ds.map_batches(_count_block, batch_format="pyarrow", batch_size=None).take_all()
    status, sums, examples = Counter(), Counter(), []
    for part in parts:
        block = json.loads(part["counts"])
        status.update(block["status"])
        sums.update(block["sums"])
        examples += block["errors"]
    examples.sort(key=lambda e: e["id"])
    return {"status": dict(status), "sums": dict(sums), "errors": examples[:_MAX_ERROR_EXAMPLES]}


def _count_block(batch: pa.Table) -> pa.Table:
    status, sums, errors = Counter(), Counter(), []
    statuses = batch["status"].to_pylist()
    splits = batch["split"].to_pylist() if "split" in batch.column_names else [""] * len(statuses)
    for i, (st, split) in enumerate(zip(statuses, splits)):
        status[_status_key(st, split)] += 1
        if st.startswith("errored:") and len(errors) < _MAX_ERROR_EXAMPLES:
            errors.append({"id": batch["id"][i].as_py(), "url": batch["url"][i].as_py(), "status": st})
    for col in batch.column_names:
        if col.startswith("n_"):
            sums[col] += sum(v or 0 for v in batch[col].to_pylist())
    for col in ("source", "language"):  # kept documents per source and per language
        if col in batch.column_names:
            for st, value in zip(statuses, batch[col].to_pylist()):
                if st == "kept":
                    sums[f"kept_by_{col}:{value or 'unknown'}"] += 1
    data = {"status": status, "sums": sums, "errors": errors}
    return pa.table({"counts": [json.dumps(data)]})


def _status_key(status: str, split: str) -> str:
    """kept:<split>, or <kind>:<step>:<reason> with an error message cut to its exception type."""
    if status == "kept":
        return f"kept:{split}"
    kind, step, reason = (status.split(":", 2) + ["", ""])[:3]
    if kind == "errored":
        reason = reason.split(":", 1)[0]
    return f"{kind}:{step}:{reason}"


def build_report(counts: dict, step_order: list[str], extra: dict) -> dict:
    """Per-step in/kept/dropped/errored in pipeline order, reasons, totals."""
    by_kind = {"dropped": Counter(), "errored": Counter(), "skipped": Counter()}
    kept = Counter()
    for key, n in counts["status"].items():
        kind, rest = key.split(":", 1)
        if kind == "kept":
            kept[rest] += n
        else:
            by_kind[kind][rest] += n
    dropped, errored = by_kind["dropped"], by_kind["errored"]
    seen = {k.split(":", 1)[0] for k in list(dropped) + list(errored)}
    order = step_order + sorted(seen - set(step_order))
    input_docs = sum(kept.values()) + sum(dropped.values()) + sum(errored.values())
    steps, remaining = [], input_docs
    for step in order:
        d = sum(n for k, n in dropped.items() if k.split(":", 1)[0] == step)
        e = sum(n for k, n in errored.items() if k.split(":", 1)[0] == step)
        steps.append({"step": step, "in": remaining, "kept": remaining - d - e, "dropped": d, "errored": e})
        remaining -= d + e
    pii = {k[len("n_pii_"):]: v for k, v in sorted(counts["sums"].items()) if k.startswith("n_pii_")}
    report = {
        "input_docs": input_docs,
        "kept_docs": sum(kept.values()),
        "dropped_docs": sum(dropped.values()),
        "errored_docs": sum(errored.values()),
        "train_docs": kept.get("train", 0),
        "val_docs": kept.get("val", 0),
        "steps": steps,
        "dropped": dict(sorted(dropped.items())),
        "errors": dict(sorted(errored.items())),
        "error_examples": counts["errors"],
        "records_skipped": {k.split(":", 1)[1]: v for k, v in sorted(by_kind["skipped"].items())},
        "pii_replacements": pii,
        "kept_by_source": _prefixed(counts["sums"], "kept_by_source:"),
        "kept_by_language": _prefixed(counts["sums"], "kept_by_language:"),
        "contaminated_docs": counts["sums"].get("n_contaminated", 0),
    }
    assert remaining == report["kept_docs"], "step accounting does not add up"
    report.update(extra)
    return report


def _prefixed(sums: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sorted(sums.items()) if k.startswith(prefix)}


def write_report(report: dict, output_dir: str) -> None:
    out = Path(output_dir)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))


def render_markdown(r: dict) -> str:
    lines = ["# Curation report", "",
             f"{r['input_docs']} documents in, {r['kept_docs']} kept ({r['train_docs']} train, "
             f"{r['val_docs']} val), {r['dropped_docs']} dropped, {r['errored_docs']} errored.", "",
             "| step | in | kept | dropped | errored |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {s['step']} | {s['in']} | {s['kept']} | {s['dropped']} | {s['errored']} |" for s in r["steps"]]
    lines += ["", "## Drop reasons", "", "| step:reason | documents |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(r["dropped"].items(), key=lambda kv: -kv[1])]
    lines += ["", "## PII replacements", ""] + [f"- {k}: {n}" for k, n in r["pii_replacements"].items()]
    for key, title in (("kept_by_source", "Kept per source"), ("kept_by_language", "Kept per language")):
        if r.get(key):
            lines += ["", f"## {title}", ""] + [f"- {k}: {n}" for k, n in r[key].items()]
    if r["records_skipped"]:
        lines += ["", "## Records that are not documents (skipped)", ""]
        lines += [f"- {k}: {n}" for k, n in r["records_skipped"].items()]
    if r["errors"]:
        lines += ["", "## Errors", ""] + [f"- {k}: {n}" for k, n in r["errors"].items()]
        lines += [f"  - `{e['url'] or e['id']}`: {e['status'][:160]}" for e in r["error_examples"]]
    if "seconds" in r:
        lines += ["", f"Wall time: {r['seconds']:.1f} s."]
    return "\n".join(lines) + "\n"
