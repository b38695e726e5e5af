"""HumanEval-style code generation, scored by running the programs (opt-in only): `humaneval_local`.

    cfg = EvalConfig(tasks=["humaneval_local"], allow_code_execution=True,
                     benchmark_paths={"humaneval": "/data/HumanEval.jsonl.gz"})

Reads a HumanEval-format jsonl (or .jsonl.gz): one problem a line with `task_id`, `prompt` (a
signature and docstring), `canonical_solution`, `test` (defines `check(candidate)`) and
`entry_point`. The task mirrors lm-eval 0.4's `humaneval` YAML (prompt as the context, its stop
strings, `unsafe_code: true`, the `create_test` filter that prepends the prompt); the metric is
computed here instead of by the `evaluate` package's code_eval: each completion becomes
`prompt + completion + test + check(entry_point)`, run by code_exec.run_program under
eval.code_timeout_s and eval.code_memory_mb. eval.code_samples = n completions per problem
(greedy when 1, else sampled at eval.code_temperature) give pass@k for k in 1, 10, 100 up to n,
with the unbiased estimator of Chen et al. 2021 averaged over problems.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import yaml

from pipelines.evaluation.code_exec import pass_at_k, run_program
from pipelines.evaluation.config import EvalConfig

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]     # lm-eval's humaneval.yaml
KS = (1, 10, 100)


def read_humaneval(path: Path) -> list[dict]:
    """Problems from a HumanEval jsonl (.gz allowed); ValueError naming the line that lacks a field."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"humaneval: {path} line {i} has no string {missing[0]!r} "
                                 f"(each line needs {', '.join(FIELDS)})")
            rows.append({k: row[k] for k in FIELDS})
    return rows


def program(doc: dict, full_completion: str) -> str:
    """The file that is run: prompt + completion (already joined by the filter), tests, the check call."""
    return f"{full_completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def build_humaneval(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    from pipelines.evaluation.benchmarks import UTILS_MODULE, json_dataset, resolve, write_jsonl, write_utils

    rows = read_humaneval(resolve(cfg, "humaneval"))
    for row in rows:   # the limits travel with each problem to process_results in the worker
        row["limits"] = {"timeout_s": cfg.code_timeout_s, "memory_mb": cfg.code_memory_mb}
    files = {"test": write_jsonl(task_dir / f"{name}.test.jsonl", rows)}
    n = cfg.code_samples
    sample = n > 1
    spec = {"task": name, **json_dataset(files), "unsafe_code": True, "output_type": "generate_until",
            "test_split": "test", "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{test}}\ncheck({{entry_point}})",
            "metric_list": [{"metric": f"pass@{k}", "aggregation": "mean", "higher_is_better": True}
                            for k in KS if k <= n],
            "generation_kwargs": {"until": STOP, "max_gen_toks": cfg.code_max_gen_toks, "do_sample": sample,
                                  "temperature": cfg.code_temperature if sample else 0.0},
            "repeats": n, "num_fewshot": 0, "metadata": {"version": 1.0}}
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=1000)
    # Nested `!function` tags, which safe_dump cannot write.
    text += (f"filter_list:\n- name: create_test\n  filter:\n  - function: custom\n"
             f"    filter_fn: !function {UTILS_MODULE}.build_predictions\n"
             f"process_results: !function {UTILS_MODULE}.process_results_humaneval\n")
    (task_dir / f"{name}.yaml").write_text(text)
    write_utils(task_dir)
    return {"examples": len(rows), "chance": 0.0, "metric": "pass@1,create_test"}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval's humaneval filter: every completion with its prompt in front."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def process_results_humaneval(doc: dict, results: list) -> dict:
    """Run each of the n completions of one problem; pass@k for every k <= n."""
    completions = results[0] if results and isinstance(results[0], list) else results
    limits = doc.get("limits") or {}
    outcomes = [run_program(program(doc, c), **limits) for c in completions]
    n, c = len(outcomes), sum(o.passed for o in outcomes)
    return {f"pass@{k}": pass_at_k(n, c, k) for k in KS if k <= n}
