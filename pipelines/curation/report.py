"""The curation report: counts per step, drop reasons, PII counts, errors, from the status column,
and pictures of them (figures.py: funnel, drop reasons, length before/after, languages, PII).

Every row carries its fate in `status` (kept / dropped:<step>:<reason> / errored:<step>:<error>
/ skipped:read:<record type>), so the report is a count over rows and
input_docs == kept_docs + dropped_docs + errored_docs holds by construction.

    counts = merge_counts(count_table(t) for t in tables)   # or count_rows(ds) over a Ray dataset
    report = build_report(counts, step_order, extra)
    write_report(report, "out/")                  # out/report.json, out/report.md and its PNGs
"""
from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa

_MAX_ERROR_EXAMPLES = 20
_DROP_EXAMPLES = 3  # example documents shown per drop reason (smallest ids: deterministic)
_SNIPPET_CHARS = 200


def count_rows(ds) -> dict:
    """Status, split and counter-column totals over a whole Ray dataset (a per-block partial sum)."""
    parts = ds.map_batches(_count_block, batch_format="pyarrow", batch_size=None).take_all()
    return merge_counts(json.loads(part["counts"]) for part in parts)


def merge_counts(blocks) -> dict:
    """The sum of `count_table` results (per block, or per part from its marker)."""
    status, sums, examples, dropped = Counter(), Counter(), [], {}
    for block in blocks:
        status.update(block["status"])
        sums.update(block["sums"])
        examples += block["errors"]
        for key, docs in block["dropped"].items():
            dropped[key] = sorted(dropped.get(key, []) + docs, key=lambda e: e["id"])[:_DROP_EXAMPLES]
    examples.sort(key=lambda e: e["id"])
    return {"status": dict(status), "sums": dict(sums), "errors": examples[:_MAX_ERROR_EXAMPLES],
            "dropped_examples": dict(sorted(dropped.items()))}


def _count_block(batch: pa.Table) -> pa.Table:
    return pa.table({"counts": [json.dumps(count_table(batch))]})


def count_table(batch: pa.Table) -> dict:
    """Counts of one table of rows: status keys, counter-column sums, error and drop examples."""
    status, sums, errors, dropped = Counter(), Counter(), [], {}
    statuses = batch["status"].to_pylist()
    splits = batch["split"].to_pylist() if "split" in batch.column_names else [""] * len(statuses)
    for i, (st, split) in enumerate(zip(statuses, splits)):
        key = _status_key(st, split)
        status[key] += 1
        if st.startswith("errored:") and len(errors) < _MAX_ERROR_EXAMPLES:
            errors.append({"id": batch["id"][i].as_py(), "url": batch["url"][i].as_py(), "status": st})
        if st.startswith("dropped:"):
            dropped.setdefault(key.split(":", 1)[1], []).append(_example(batch, i))
    dropped = {k: sorted(v, key=lambda e: e["id"])[:_DROP_EXAMPLES] for k, v in dropped.items()}
    for col in batch.column_names:
        if col.startswith("n_"):
            sums[col] += sum(v or 0 for v in batch[col].to_pylist())
    sums.update(_length_counts(batch, statuses))
    for col in ("source", "language"):  # kept documents per source and per language
        if col in batch.column_names:
            for st, value in zip(statuses, batch[col].to_pylist()):
                if st == "kept":
                    sums[f"kept_by_{col}:{value or 'unknown'}"] += 1
    if "copies" in batch.column_names:  # train rows written per source after mixing
        for split, source, n in zip(splits, batch["source"].to_pylist(), batch["copies"].to_pylist()):
            if split == "train":
                sums[f"train_docs_by_source:{source}"] += 1
                sums[f"train_rows_by_source:{source}"] += n
    return {"status": dict(status), "sums": dict(sums), "errors": errors, "dropped": dropped}


def _length_counts(batch: pa.Table, statuses: list[str]) -> Counter:
    """Documents per figures.LENGTH_EDGES bin: `len_extracted:<bin>` for every extracted text (its
    length before cleaning and filters, from the extract step), `len_kept:<bin>` for every kept
    document (its text after every step)."""
    import pyarrow.compute as pc

    from pipelines.curation.figures import length_bin

    counts = Counter()
    if "n_chars_extracted" in batch.column_names:
        for n in batch["n_chars_extracted"].to_pylist():
            if n:
                counts[f"len_extracted:{length_bin(n)}"] += 1
    if "text" in batch.column_names:
        for st, n in zip(statuses, pc.utf8_length(batch["text"]).to_pylist()):
            if st == "kept":
                counts[f"len_kept:{length_bin(n or 0)}"] += 1
    return counts


def _length_bins(sums: dict) -> dict:
    """The histograms of _length_counts as lists over figures.LENGTH_EDGES."""
    from pipelines.curation.figures import LENGTH_EDGES

    def column(prefix: str) -> list[int]:
        return [int(sums.get(f"{prefix}:{i}", 0)) for i in range(len(LENGTH_EDGES))]

    return {"edges": list(LENGTH_EDGES), "extracted": column("len_extracted"), "kept": column("len_kept")}


def _example(batch: pa.Table, i: int) -> dict:
    """id, url and the start of the text (as the dropping step saw it) of one dropped row."""
    text = batch["text"][i].as_py() if "text" in batch.column_names else ""
    return {"id": batch["id"][i].as_py(), "url": batch["url"][i].as_py() or "",
            "snippet": " ".join((text or "").split())[:_SNIPPET_CHARS]}


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
        "train_docs_by_source": _prefixed(counts["sums"], "train_docs_by_source:"),
        "train_rows_by_source": _prefixed(counts["sums"], "train_rows_by_source:"),
        "dropped_examples": counts.get("dropped_examples", {}),
        "contaminated_docs": counts["sums"].get("n_contaminated", 0),
        "length_bins": _length_bins(counts["sums"]),
    }
    assert remaining == report["kept_docs"], "step accounting does not add up"
    report.update(extra)
    return report


def _mixing_table(r: dict) -> list[str]:
    """Per source: weight, kept documents, train documents and train rows after mixing."""
    weights = r.get("source_weights") or {}
    lines = ["", "## Per source (mixing)", "", "| source | weight | kept docs | train docs | train rows |",
             "|---|---:|---:|---:|---:|"]
    kept, docs, rows = (r.get(k, {}) for k in ("kept_by_source", "train_docs_by_source", "train_rows_by_source"))
    for source in sorted(set(kept) | set(rows)):
        lines.append(f"| {source} | {weights.get(source, 1.0):g} | {kept.get(source, 0)} | "
                     f"{docs.get(source, 0)} | {rows.get(source, 0)} |")
    return lines


def _md_quote(snippet: str) -> str:
    """A snippet that cannot break the markdown list: no backticks or pipes, marked empty if so."""
    return f"“{snippet.replace('`', chr(39)).replace('|', '/')}”" if snippet else "(no text)"


def _prefixed(sums: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sorted(sums.items()) if k.startswith(prefix)}


def write_report(report: dict, output_dir: str) -> None:
    """output_dir/report.json, report.md and its pictures (figures.py, PNG); output_dir may be a
    bucket (store.py). report["figures"] names the pictures written."""
    from pipelines.curation import store
    from pipelines.curation.figures import render_figures

    figures = render_figures(report)
    for name, png in figures.items():
        store.write_bytes(store.join(output_dir, name), png)
    report["figures"] = sorted(figures)
    store.write_bytes(store.join(output_dir, "report.json"), (json.dumps(report, indent=2) + "\n").encode())
    store.write_bytes(store.join(output_dir, "report.md"), render_markdown(report).encode())


def _picture(r: dict, name: str) -> list[str]:
    """The markdown lines embedding figure `name`, when it was written."""
    from pipelines.curation.figures import FIGURES

    return ["", f"![{FIGURES[name][0]}]({name})"] if name in r.get("figures", []) else []


def render_markdown(r: dict) -> str:
    lines = ["# Curation report", "",
             f"{r['input_docs']} documents in, {r['kept_docs']} kept ({r['train_docs']} train, "
             f"{r['val_docs']} val), {r['dropped_docs']} dropped, {r['errored_docs']} errored.", "",
             "| step | in | kept | dropped | errored |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {s['step']} | {s['in']} | {s['kept']} | {s['dropped']} | {s['errored']} |" for s in r["steps"]]
    lines += _picture(r, "funnel.png")
    lines += ["", "## Drop reasons", "", "| step:reason | documents |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(r["dropped"].items(), key=lambda kv: -kv[1])]
    lines += _picture(r, "drop_reasons.png")
    if "lengths.png" in r.get("figures", []):
        lines += ["", "## Document length", "", "Characters per document: the extracted text before cleaning "
                  "and filters, and the kept documents after every step."] + _picture(r, "lengths.png")
    lines += ["", "## PII replacements", ""] + [f"- {k}: {n}" for k, n in r["pii_replacements"].items()]
    lines += _picture(r, "pii.png")
    if r.get("kept_by_source") or r.get("train_rows_by_source"):
        lines += _mixing_table(r)
    if r.get("kept_by_language"):
        lines += ["", "## Kept per language", ""] + [f"- {k}: {n}" for k, n in r["kept_by_language"].items()]
        lines += _picture(r, "languages.png")
    if r["records_skipped"]:
        lines += ["", "## Records that are not documents (skipped)", ""]
        lines += [f"- {k}: {n}" for k, n in r["records_skipped"].items()]
    if r["errors"]:
        lines += ["", "## Errors", ""] + [f"- {k}: {n}" for k, n in r["errors"].items()]
        lines += [f"  - `{e['url'] or e['id']}`: {e['status'][:160]}" for e in r["error_examples"]]
    if r.get("dropped_examples"):
        lines += ["", f"## Examples of dropped documents (up to {_DROP_EXAMPLES} per reason)", ""]
        for key, docs in r["dropped_examples"].items():
            lines += [f"### {key}", ""]
            lines += [f"- `{d['url'] or d['id']}`: {_md_quote(d['snippet'])}" for d in docs]
            lines += [""]
    if "seconds" in r:
        lines += ["", f"Wall time: {r['seconds']:.1f} s."]
    return "\n".join(lines) + "\n"
