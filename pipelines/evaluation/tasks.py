"""Local lm-eval tasks: examples written as jsonl plus a task YAML that reads them with no Hub.

    names = write_tasks(cfg, curated_dir="runs/demo/curated", task_dir="runs/demo/eval/tasks")
    TaskManager(include_path="runs/demo/eval/tasks", include_defaults=False)

- bespoke_cloze (here): for held-out documents, the first K words are the context; the choices
  are the true next span of S words and three S-word spans from other held-out documents, as flat
  records `{"id", "context", "choices", "label"}`. It measures in-domain language modelling;
  chance is 1/4.
- the standard benchmarks (ARC, HellaSwag, MMLU, TruthfulQA, GSM8K) from local files: see
  benchmarks.py, which mirrors lm-eval's own task YAMLs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from pipelines.evaluation.benchmarks import build_benchmark
from pipelines.curation import store
from pipelines.evaluation.config import EvalConfig

N_CHOICES = 4


def write_tasks(cfg: EvalConfig, curated_dir: str | Path | None, task_dir: str | Path) -> dict[str, dict]:
    """Build every task in cfg.tasks into `task_dir` (jsonl + YAML).

    Returns {task: {"examples": n, "chance": score of a uniform guess, "metric": the headline
    lm-eval metric key, and for groups "subtasks": leaf task names}}.
    """
    task_dir = Path(task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in cfg.tasks:
        info = _cloze_task(cfg, curated_dir, task_dir) if name == "bespoke_cloze" else \
            build_benchmark(cfg, name, task_dir)
        if not info["examples"]:
            raise ValueError(f"task {name} has no examples; check its source data")
        counts[name] = {"metric": "acc,none", **info}
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
    folder = store.join(str(curated_dir), split)
    files = store.list_files(folder, ".parquet")
    if not files:
        raise FileNotFoundError(f"no parquet shards in {folder}: run `bespoke curate` first")
    docs = []
    for f in files:
        table = store.read_table(f, columns=["id", "text"]).to_pydict()
        docs.extend(zip(map(str, table["id"]), table["text"]))
    return sorted(docs)


def _cloze_task(cfg: EvalConfig, curated_dir: str | Path | None, task_dir: Path) -> dict:
    if curated_dir is None:
        raise ValueError("bespoke_cloze needs curated_dir (the curate stage's output)")
    records = build_cloze(read_documents(curated_dir), cfg.cloze_examples, cfg.cloze_context_words,
                          cfg.cloze_span_words, cfg.seed)
    _write_task("bespoke_cloze", records, task_dir)
    return {"examples": len(records), "chance": float(np.mean([1.0 / len(r["choices"]) for r in records]))}


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
