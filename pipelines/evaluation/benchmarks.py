"""Standard benchmarks from local files as lm-eval tasks that mirror lm-eval's own YAMLs.

    info = build_benchmark(cfg, "mmlu_local", task_dir)   # writes jsonl + YAML, returns counts

Each builder reads the original release files (the layout of ../shared/data/benchmarks; any path
can be overridden with eval.benchmark_paths), converts the records to the schema of the Hugging
Face dataset lm-eval's task expects, and writes a YAML whose prompt, choices, target, metrics,
filters and few-shot settings are copied from lm-eval 0.4's tasks/ folder; only the dataset is
swapped for `dataset_path: json` on the converted file, so no Hub access is needed.

| task | lm-eval original | split scored | metric |
|---|---|---|---|
| arc_easy_local / arc_challenge_local | arc_easy / arc_challenge | test (Dev as validation) | acc, acc_norm |
| hellaswag_local | hellaswag | validation (10,042) | acc, acc_norm |
| mmlu_local (group of 57) | mmlu (default) | test, 5-shot first_n from dev | acc |
| truthfulqa_mc1_local / _mc2_local | truthfulqa_mc1 / _mc2 | validation (817) | acc (mc2: true mass) |
| gsm8k_local | gsm8k | test (1,319), 5-shot | exact_match (strict-match, flexible-extract) |
| humaneval_local (opt-in, humaneval.py) | humaneval | test (164) | pass@1 (pass@k with eval.code_samples) |

GSM8K's few-shot examples come from train in lm-eval; without a `gsm8k/train.jsonl` next to the
test file they are drawn from test, never the question being asked (lm-eval's sampler drops it).
"""
from __future__ import annotations

import bz2
import csv
import json
from pathlib import Path

import numpy as np
import yaml

from pipelines.evaluation.config import BENCHMARK_DEFAULT_PATHS, EvalConfig
from pipelines.evaluation.mmlu_subjects import MMLU_SUBJECTS

MC_METRICS = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]
UTILS_MODULE = "bespoke_task_utils"   # python file next to the YAMLs, for `!function` hooks


def resolve(cfg: EvalConfig, benchmark: str) -> Path:
    """The file or folder of `benchmark`: eval.benchmark_paths, else its default under benchmarks_dir."""
    path = Path(cfg.benchmark_paths.get(benchmark) or BENCHMARK_DEFAULT_PATHS[benchmark])
    if not path.is_absolute():
        path = Path(cfg.benchmarks_dir) / path
    if not path.exists():
        raise FileNotFoundError(f"{benchmark}: {path} does not exist; set eval.benchmarks_dir "
                                f"or eval.benchmark_paths.{benchmark}")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path = path.resolve()
    with path.open("w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def write_yaml(task_dir: Path, name: str, spec: dict, functions: dict[str, str] | None = None) -> None:
    """`<name>.yaml`; `functions` {key: "module.fn"} become lm-eval `!function` lines (safe_dump cannot)."""
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=1000)
    text += "".join(f"{key}: !function {target}\n" for key, target in (functions or {}).items())
    (task_dir / f"{name}.yaml").write_text(text)


def json_dataset(files: dict[str, Path]) -> dict:
    return {"dataset_path": "json", "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}}}


# ---- ARC ---------------------------------------------------------------------------------------

def read_arc(path: Path) -> list[dict]:
    """AI2 ARC jsonl -> allenai/ai2_arc rows {id, question, choices: {text, label}, answerKey}."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            choices = item["question"]["choices"]
            rows.append({"id": item["id"], "question": item["question"]["stem"],
                         "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                         "answerKey": item["answerKey"]})
    return rows


def build_arc(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    subset = "Challenge" if "challenge" in name else "Easy"
    folder = resolve(cfg, "arc")
    test = read_arc(folder / f"ARC-{subset}-Test.jsonl")
    files = {"test": write_jsonl(task_dir / f"{name}.test.jsonl", test)}
    dev = folder / f"ARC-{subset}-Dev.jsonl"
    if dev.is_file():
        files["validation"] = write_jsonl(task_dir / f"{name}.validation.jsonl", read_arc(dev))
    spec = {"task": name, **json_dataset(files), "output_type": "multiple_choice",
            "validation_split": "validation" if "validation" in files else None, "test_split": "test",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "{{choices.label.index(answerKey)}}", "doc_to_choice": "{{choices.text}}",
            "metric_list": MC_METRICS, "metadata": {"version": 1.0}}
    write_yaml(task_dir, name, spec)
    return {"examples": len(test), "chance": float(np.mean([1 / len(r["choices"]["text"]) for r in test]))}


# ---- HellaSwag -----------------------------------------------------------------------------------

def read_hellaswag(path: Path) -> list[dict]:
    """The 6-line text format (`label: ctx`, gold, 4 endings, already preprocessed as lm-eval does)
    -> lm-eval's processed docs {query, choices, label}."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"hellaswag: {path} has {len(lines)} lines, not a multiple of 6")
    rows = []
    for i in range(0, len(lines), 6):
        label = int(lines[i + 1])
        if not 0 <= label < 4:
            raise ValueError(f"hellaswag: {path} line {i + 2}: gold label {label} is not 0-3")
        rows.append({"ind": i // 6, "query": lines[i], "choices": lines[i + 2:i + 6], "label": label})
    return rows


def build_hellaswag(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    rows = read_hellaswag(resolve(cfg, "hellaswag"))
    files = {"validation": write_jsonl(task_dir / f"{name}.validation.jsonl", rows)}
    spec = {"task": name, **json_dataset(files), "output_type": "multiple_choice",
            "validation_split": "validation", "test_split": None,
            "doc_to_text": "{{query}}", "doc_to_target": "{{label}}", "doc_to_choice": "choices",
            "metric_list": MC_METRICS, "metadata": {"version": 1.0}}
    write_yaml(task_dir, name, spec)
    return {"examples": len(rows), "chance": 0.25}


# ---- MMLU ----------------------------------------------------------------------------------------

def read_mmlu(path: Path, subject: str) -> list[dict]:
    """Headerless `question,A,B,C,D,answer` csv -> cais/mmlu rows {question, subject, choices, answer}."""
    with path.open(newline="", encoding="utf-8") as f:
        return [{"question": q, "subject": subject, "choices": [a, b, c, d], "answer": "ABCD".index(ans.strip())}
                for q, a, b, c, d, ans in csv.reader(f)]


def build_mmlu(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    """One task per subject (5-shot, first_n from dev), tagged by category, grouped like lm-eval's mmlu."""
    folder = resolve(cfg, "mmlu")
    n, subtasks = 0, []
    for subject, category in MMLU_SUBJECTS.items():
        test = read_mmlu(folder / "test" / f"{subject}_test.csv", subject)
        dev = read_mmlu(folder / "dev" / f"{subject}_dev.csv", subject)
        task = f"{name}_{subject}"
        files = {"test": write_jsonl(task_dir / f"{task}.test.jsonl", test),
                 "dev": write_jsonl(task_dir / f"{task}.dev.jsonl", dev)}
        spec = {"task": task, "task_alias": subject, "tag": f"{name}_{category}_tasks", **json_dataset(files),
                "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
                "num_fewshot": 5, "output_type": "multiple_choice",
                "description": f"The following are multiple choice questions (with answers) about "
                               f"{' '.join(subject.split('_'))}.\n\n",
                "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                               "D. {{choices[3]}}\nAnswer:",
                "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer",
                "metric_list": MC_METRICS[:1], "metadata": {"version": 1.0}}
        write_yaml(task_dir, task, spec)
        n += len(test)
        subtasks.append(task)
    aggregate = {"aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}], "metadata": {"version": 2}}
    for category in sorted(set(MMLU_SUBJECTS.values())):
        write_yaml(task_dir, f"{name}_{category}", {"group": f"{name}_{category}", "group_alias": category,
                                                    "task": [f"{name}_{category}_tasks"], **aggregate})
    write_yaml(task_dir, name, {"group": name, "task": [f"{name}_{c}" for c in
                                                        ("stem", "other", "social_sciences", "humanities")],
                                **aggregate})
    return {"examples": n, "chance": 0.25, "subtasks": subtasks}


# ---- TruthfulQA ----------------------------------------------------------------------------------

TRUTHFULQA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain.")


def read_truthfulqa(path: Path) -> list[dict]:
    """mc_task.json ({text: 0/1} maps) -> truthful_qa/multiple_choice rows, the correct mc1 answer first."""
    rows = []
    for item in json.loads(path.read_text()):
        targets = {}
        for key in ("mc1_targets", "mc2_targets"):
            pairs = sorted(item[key].items(), key=lambda kv: -kv[1])   # stable: true answers first
            targets[key] = {"choices": [c for c, _ in pairs], "labels": [int(v) for _, v in pairs]}
        if targets["mc1_targets"]["labels"].count(1) != 1:
            raise ValueError(f"truthfulqa: {item['question']!r} has not exactly one true mc1 answer")
        rows.append({"question": item["question"], **targets})
    return rows


def build_truthfulqa(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    rows = read_truthfulqa(resolve(cfg, "truthfulqa"))
    key = "mc2_targets" if "mc2" in name else "mc1_targets"
    files = {"validation": write_jsonl(task_dir / f"{name}.validation.jsonl", rows)}
    spec = {"task": name, **json_dataset(files), "output_type": "multiple_choice",
            "validation_split": "validation", "test_split": None, "num_fewshot": 0,
            "doc_to_text": TRUTHFULQA_PROMPT + "\n\nQ: {{question}}\nA:",
            "doc_to_target": 0, "doc_to_choice": "{{%s.choices}}" % key,
            "metric_list": MC_METRICS[:1], "metadata": {"version": 3.0 if key == "mc2_targets" else 2.0}}
    functions = None
    if key == "mc2_targets":
        functions = {"process_results": f"{UTILS_MODULE}.process_results_mc2"}
        write_utils(task_dir)
        chance = np.mean([np.mean(r[key]["labels"]) for r in rows])   # true mass of a uniform guess
    else:
        chance = np.mean([1 / len(r[key]["choices"]) for r in rows])
    write_yaml(task_dir, name, spec, functions)
    return {"examples": len(rows), "chance": float(chance)}


def process_results_mc2(doc: dict, results: list) -> dict:
    """lm-eval's truthfulqa utils.process_results_mc2: normalised probability mass on true answers."""
    ll = np.array([r[0] for r in results])
    probs = np.exp(ll - ll.max())        # same ratios as exp(ll), without underflow to 0/0
    probs = probs / probs.sum()
    labels = np.array(doc["mc2_targets"]["labels"])
    return {"acc": float(probs[labels == 1].sum())}


def write_utils(task_dir: Path) -> None:
    """The module the task YAMLs name with !function: re-exports this package's hooks."""
    (task_dir / f"{UTILS_MODULE}.py").write_text(
        '"""Hooks the task YAMLs here name with !function (written by pipelines.evaluation.benchmarks)."""\n'
        "from pipelines.evaluation.benchmarks import process_results_mc2  # noqa: F401\n"
        "from pipelines.evaluation.humaneval import build_predictions, process_results_humaneval  # noqa: F401\n")


# ---- GSM8K ---------------------------------------------------------------------------------------

def read_gsm8k(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def build_gsm8k(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    folder = resolve(cfg, "gsm8k")
    test = read_gsm8k(folder / "test.jsonl" if folder.is_dir() else folder)
    files = {"test": write_jsonl(task_dir / f"{name}.test.jsonl", test)}
    train = folder / "train.jsonl"
    if folder.is_dir() and train.is_file():
        files["train"] = write_jsonl(task_dir / f"{name}.train.jsonl", read_gsm8k(train))
    fewshot = "train" if "train" in files else "test"
    spec = {"task": name, **json_dataset(files), "output_type": "generate_until",
            "training_split": "train" if "train" in files else None, "fewshot_split": fewshot,
            "test_split": "test", "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "{{answer}}",
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                             "ignore_case": True, "ignore_punctuation": False,
                             "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
            "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False,
                                  "temperature": 0.0},
            "repeats": 1, "num_fewshot": 5, "filter_list": GSM8K_FILTERS, "metadata": {"version": 3.0}}
    write_yaml(task_dir, name, spec)
    return {"examples": len(test), "chance": 0.0, "metric": "exact_match,strict-match"}


GSM8K_FILTERS = [
    {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                        {"function": "take_first"}]},
    {"name": "flexible-extract", "filter": [{"function": "regex", "group_select": -1,
                                             "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                                            {"function": "take_first"}]},
]

BUILDERS = {"arc_easy_local": build_arc, "arc_challenge_local": build_arc, "hellaswag_local": build_hellaswag,
            "mmlu_local": build_mmlu, "truthfulqa_mc1_local": build_truthfulqa,
            "truthfulqa_mc2_local": build_truthfulqa, "gsm8k_local": build_gsm8k}


def build_benchmark(cfg: EvalConfig, name: str, task_dir: Path) -> dict:
    """Write task `name` into task_dir; returns {"examples", "chance"[, "subtasks", "metric"]}."""
    if name == "humaneval_local":   # its own module (it imports the helpers above)
        from pipelines.evaluation.humaneval import build_humaneval

        return build_humaneval(cfg, name, Path(task_dir))
    return BUILDERS[name](cfg, name, Path(task_dir))
