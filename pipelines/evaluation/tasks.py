"""Local lm-eval tasks: examples written as jsonl plus a task YAML that reads them with no Hub.

    names = write_tasks(cfg, curated_dir="runs/demo/curated", task_dir="runs/demo/eval/tasks")
    TaskManager(include_path="runs/demo/eval/tasks", include_defaults=False)

Every task here is the same shape, a four-way (or n-way) multiple choice over flat records
`{"id", "context", "choices", "label"}`, so one YAML template serves them all:
- bespoke_cloze: for held-out documents, the first K words are the context; the choices are the
  true next span of S words and three S-word spans from other held-out documents. It measures
  in-domain language modelling; chance is 1/4.
- arc_easy_local: AI2 ARC-Easy test questions from a local copy (`<benchmarks_dir>/arc/`).
Adding a task = one function returning records, plus a line in `_BUILDERS`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from pipelines.evaluation.config import EvalConfig

N_CHOICES = 4


def write_tasks(cfg: EvalConfig, curated_dir: str | Path | None, task_dir: str | Path) -> dict[str, dict]:
    """Build every task in cfg.tasks into `task_dir` (jsonl + YAML).

    Returns {task: {"examples": n, "chance": expected accuracy of a uniform guess}}.
    """
    task_dir = Path(task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in cfg.tasks:
        records = _BUILDERS[name](cfg, curated_dir)
        if not records:
            raise ValueError(f"task {name} has no examples; check its source data")
        _write_task(name, records, task_dir)
        chance = float(np.mean([1.0 / len(r["choices"]) for r in records]))
        counts[name] = {"examples": len(records), "chance": chance}
    return counts


def build_cloze(docs: list[tuple[str, str]], n: int, context_words: int, span_words: int,
                seed: int) -> list[dict]:
    """Cloze records from (id, text) documents; deterministic for the same docs and seed.

    Each document is cut into consecutive, non-overlapping windows of context_words + span_words
    words, and every window is a candidate question, so a small held-out set still yields enough
    questions for a useful accuracy (a held-out set of 12 long documents gives hundreds).
    """
    words = [(doc_id, text.split()) for doc_id, text in docs]
    width = context_words + span_words
    windows = [(i, start) for i, (_, w) in enumerate(words) for start in range(0, len(w) - width + 1, width)]
    donors = [i for i, (_, w) in enumerate(words) if len(w) >= span_words]
    if len(windows) < 1 or len(donors) < N_CHOICES:
        raise ValueError(f"cloze needs documents of >= {width} words and "
                         f"{N_CHOICES} documents of >= {span_words} words; got {len(windows)} windows and {len(donors)}")
    rng = np.random.default_rng(seed)
    records = []
    for k in rng.permutation(len(windows))[:n]:
        i, start = windows[int(k)]
        doc_id, w = words[i]
        answer = " ".join(w[start + context_words:start + width])
        distractors = _distractors(words, donors, i, answer, span_words, rng)
        if distractors is None:
            continue  # the other documents repeat this span: no fair question
        label = int(rng.integers(N_CHOICES))
        choices = distractors[:label] + [answer] + distractors[label:]
        records.append({"id": f"{doc_id}:{start}", "context": " ".join(w[start:start + context_words]),
                        "choices": choices, "label": label})
    return records


def _distractors(words, donors: list[int], own: int, answer: str, span_words: int,
                 rng: np.random.Generator, tries: int = 20) -> list[str] | None:
    """N_CHOICES-1 distinct spans from other documents, each different from the answer."""
    picked: list[str] = []
    others = [d for d in donors if d != own]
    for _ in range(tries):
        for d in rng.choice(others, size=min(len(others), N_CHOICES - 1), replace=False):
            w = words[int(d)][1]
            start = int(rng.integers(len(w) - span_words + 1))
            span = " ".join(w[start:start + span_words])
            if span != answer and span not in picked:
                picked.append(span)
            if len(picked) == N_CHOICES - 1:
                return picked
    return None


def read_documents(curated_dir: str | Path, split: str = "val") -> list[tuple[str, str]]:
    """(id, text) of every curated document in `split`, sorted by id so shard layout does not matter."""
    files = sorted((Path(curated_dir) / split).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet shards in {Path(curated_dir) / split}: run `bespoke curate` first")
    docs = []
    for f in files:
        table = pq.read_table(f, columns=["id", "text"]).to_pydict()
        docs.extend(zip(map(str, table["id"]), table["text"]))
    return sorted(docs)


def _cloze_task(cfg: EvalConfig, curated_dir: str | Path | None) -> list[dict]:
    if curated_dir is None:
        raise ValueError("bespoke_cloze needs curated_dir (the curate stage's output)")
    return build_cloze(read_documents(curated_dir), cfg.cloze_examples, cfg.cloze_context_words,
                       cfg.cloze_span_words, cfg.seed)


def _arc_easy_task(cfg: EvalConfig, curated_dir: str | Path | None) -> list[dict]:
    """ARC-Easy test from the AI2 jsonl release, in the prompt format lm-eval's arc_easy uses."""
    path = Path(cfg.benchmarks_dir) / "arc" / "ARC-Easy-Test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"arc_easy_local: {path} does not exist")
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        labels = [c["label"] for c in item["question"]["choices"]]
        records.append({"id": item["id"], "context": f"Question: {item['question']['stem']}\nAnswer:",
                        "choices": [c["text"] for c in item["question"]["choices"]],
                        "label": labels.index(item["answerKey"])})
    return records


_BUILDERS = {"bespoke_cloze": _cloze_task, "arc_easy_local": _arc_easy_task}


def _write_task(name: str, records: list[dict], task_dir: Path) -> None:
    """Write `<name>.jsonl` and `<name>.yaml` (absolute data path, so any cwd can load it)."""
    data = (task_dir / f"{name}.jsonl").resolve()
    with data.open("w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    spec = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "choices",     # a column name: lm-eval returns the list as stored
        "doc_to_target": "label",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
    }
    (task_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
