"""Pictures for the curation report: the funnel, drop reasons per step, document length before and
after, languages, PII found per type; PNG bytes (matplotlib, Agg) made from report.json's numbers.

    figures = render_figures(report)   # {"funnel.png": b"\\x89PNG...", ...}; a picture without data is left out

`report.write_report` writes them next to report.md (through store.py, so the output may be a
bucket) and report.md embeds them. Tests: tests/test_curation_report.py
(`python -m pytest tests/test_curation_report.py -q`).
"""
from __future__ import annotations

import io

# Fixed log-spaced (1-2-5) bins of document length in characters; the last bin is open-ended.
LENGTH_EDGES = (0, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
_MAX_BARS = 15  # languages and drop reasons beyond this are summed into "other"

# file name -> (alt text in report.md, function of the report returning a figure or None)
FIGURES = {}


def figure(name: str, alt: str):
    def register(fn):
        FIGURES[name] = (alt, fn)
        return fn
    return register


def length_bin(n_chars: int) -> int:
    """Index of the LENGTH_EDGES bin holding a document of n_chars characters."""
    import bisect

    return bisect.bisect_right(LENGTH_EDGES, n_chars) - 1


def length_labels() -> list[str]:
    def short(n: int) -> str:
        return f"{n // 1000}k" if n >= 1000 else str(n)

    edges = list(LENGTH_EDGES)
    return [f"{short(a)}-{short(b)}" for a, b in zip(edges, edges[1:])] + [f"{short(edges[-1])}+"]


def render_figures(report: dict) -> dict[str, bytes]:
    """Every picture the report has data for, as PNG bytes by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for name, (_, fn) in FIGURES.items():
        fig = fn(report, plt)
        if fig is not None:
            buf = io.BytesIO()
            fig.tight_layout()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            out[name] = buf.getvalue()
    return out


def _barh(plt, labels: list[str], values: list[int], title: str, xlabel: str, colors=None):
    """Horizontal bars, first label on top, each bar labelled with its count."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.4))
    bars = ax.barh(range(len(labels)), values, color=colors or "tab:blue")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, max(values + [1]) * 1.15)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(_whole_numbers())
    ax.grid(axis="x", alpha=0.3)
    return fig


def _whole_numbers():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _top(counts: dict[str, int]) -> tuple[list[str], list[int]]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > _MAX_BARS:
        items = items[: _MAX_BARS - 1] + [("other", sum(n for _, n in items[_MAX_BARS - 1:]))]
    return [k for k, _ in items], [n for _, n in items]


@figure("funnel.png", "documents left after each step")
def _funnel(r: dict, plt):
    if not r.get("steps"):
        return None
    labels = ["input"] + [s["step"] for s in r["steps"]]
    values = [r["input_docs"]] + [s["kept"] for s in r["steps"]]
    return _barh(plt, labels, values, "Documents left after each step", "documents")


@figure("drop_reasons.png", "documents dropped per step and reason")
def _drop_reasons(r: dict, plt):
    if not r.get("dropped"):
        return None
    order = [s["step"] for s in r.get("steps", [])]
    items = sorted(r["dropped"].items(), key=lambda kv: (_rank(order, kv[0]), -kv[1], kv[0]))
    steps = [k.split(":", 1)[0] for k, _ in items]
    palette = plt.get_cmap("tab10")
    colors = [palette(sorted(set(steps), key=lambda s: _rank(order, s)).index(s) % 10) for s in steps]
    return _barh(plt, [k.replace(":", ": ", 1) for k, _ in items], [n for _, n in items],
                 "Dropped documents per step and reason", "documents", colors)


def _rank(order: list[str], key: str) -> int:
    step = key.split(":", 1)[0]
    return order.index(step) if step in order else len(order)


@figure("lengths.png", "document length before and after curation")
def _lengths(r: dict, plt):
    bins = r.get("length_bins") or {}
    before, after = bins.get("extracted") or [], bins.get("kept") or []
    if not sum(before) and not sum(after):
        return None
    labels = length_labels()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = range(len(labels))
    width = 0.4
    ax.bar([i - width / 2 for i in x], before or [0] * len(labels), width,
           label=f"extracted text, before cleaning and filters ({sum(before):,})")
    ax.bar([i + width / 2 for i in x], after or [0] * len(labels), width,
           label=f"kept documents, after every step ({sum(after):,})")
    ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("document length (characters)")
    ax.set_ylabel("documents")
    ax.yaxis.set_major_locator(_whole_numbers())
    ax.set_title("Document length before and after")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


@figure("languages.png", "kept documents per language")
def _languages(r: dict, plt):
    if not r.get("kept_by_language"):
        return None
    labels, values = _top(r["kept_by_language"])
    return _barh(plt, labels, values, "Kept documents per language", "documents")


@figure("pii.png", "PII replaced per type")
def _pii(r: dict, plt):
    if not r.get("pii_replacements"):
        return None
    labels, values = _top(r["pii_replacements"])
    return _barh(plt, labels, values, "PII found and replaced, per type", "replacements")
