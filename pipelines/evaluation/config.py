"""Evaluation settings: one typed dataclass with defaults, validated on construction.

    cfg = EvalConfig(tasks=["bespoke_cloze"], limit=50)
    cfg = EvalConfig(tasks=["arc_easy_local", "mmlu_local"], benchmarks_dir="../shared/data/benchmarks")

Loaded from the `eval:` section of a run config by `pipelines.config.build`; every error message
starts with the field name so the loader can prefix the section (`eval.limit: ...`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

# Tasks this stage can build locally (no Hub). Each name maps to a builder in tasks.py.
BENCHMARK_TASKS = {  # task -> the benchmark folder/file it reads (a key of benchmark_paths)
    "arc_easy_local": "arc", "arc_challenge_local": "arc", "hellaswag_local": "hellaswag",
    "mmlu_local": "mmlu", "truthfulqa_mc1_local": "truthfulqa", "truthfulqa_mc2_local": "truthfulqa",
    "gsm8k_local": "gsm8k",
}
# Tasks that run the programs the model writes: only with allow_code_execution (or HF_ALLOW_CODE_EVAL=1).
CODE_TASKS = {"humaneval_local": "humaneval"}
LOCAL_TASKS = ("bespoke_cloze", *BENCHMARK_TASKS, *CODE_TASKS)
# Where each benchmark lives under benchmarks_dir (the layout of ../shared/data/benchmarks).
BENCHMARK_DEFAULT_PATHS = {
    "arc": "arc", "hellaswag": "hellaswag/hellaswag_val_full.txt.bz2", "mmlu": "mmlu",
    "truthfulqa": "truthfulqa/mc_task.json", "gsm8k": "gsm8k", "humaneval": "humaneval/HumanEval.jsonl.gz",
}


@dataclass
class EvalConfig:
    """What to measure on a trained checkpoint: held-out perplexity and lm-eval tasks."""

    ppl_max_tokens: int = 262_144       # cap on validation tokens scored for perplexity
    tasks: list[str] = field(default_factory=lambda: ["bespoke_cloze"])
    limit: int | None = None            # max examples per lm-eval task (per subject for MMLU); None = all
    batch_size: int = 16                # sequences per forward pass (perplexity and lm-eval)
    num_fewshot: int | None = None      # None = each task's own default (MMLU 5, GSM8K 5, others 0)
    cloze_examples: int = 200           # how many cloze questions to build from held-out docs
    cloze_context_words: int = 32       # words of the document shown as context
    cloze_span_words: int = 8           # words in each choice (true continuation or distractor)
    max_gen_toks: int = 64              # default generation length for generate_until tasks
    benchmarks_dir: str = ""            # folder laid out like ../shared/data/benchmarks
    # Per-benchmark overrides (arc, hellaswag, mmlu, truthfulqa, gsm8k): absolute, or relative to
    # benchmarks_dir. Defaults: arc/, hellaswag/hellaswag_val_full.txt.bz2, mmlu/,
    # truthfulqa/mc_task.json, gsm8k/, humaneval/HumanEval.jsonl.gz (not in ../shared/data).
    benchmark_paths: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    num_cpus: int = 2                   # CPUs of each Ray task; torch uses this many threads
    num_gpus: int = 0                   # 1 puts each evaluation task on a GPU worker
    # Code generation (humaneval_local) runs the programs the model writes: off unless opted in
    # here or with HF_ALLOW_CODE_EVAL=1 (lm-eval's convention). See code_exec.py for the limits.
    allow_code_execution: bool = False
    code_timeout_s: float = 10.0        # wall-clock (and CPU-seconds) limit per program
    code_memory_mb: int = 1024          # address-space limit per program (RLIMIT_AS)
    code_samples: int = 1               # completions per problem: 1 = greedy pass@1; n > 1 samples, pass@k
    code_temperature: float = 0.8       # sampling temperature when code_samples > 1
    code_max_gen_toks: int = 512        # generation length for code tasks

    def __post_init__(self) -> None:
        for name in ("ppl_max_tokens", "batch_size", "cloze_examples", "cloze_context_words",
                     "cloze_span_words", "max_gen_toks", "num_cpus", "code_memory_mb", "code_samples",
                     "code_max_gen_toks", "code_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        for name in ("seed", "num_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ValueError(f"num_fewshot: must be >= 0 or null (task default), got {self.num_fewshot}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit: must be a positive integer or null (all examples), got {self.limit}")
        if self.code_temperature < 0:
            raise ValueError(f"code_temperature: must be >= 0, got {self.code_temperature}")
        self._check_tasks()
        unknown = sorted(set(self.benchmark_paths) - set(BENCHMARK_DEFAULT_PATHS))
        if unknown:
            raise ValueError(f"benchmark_paths: unknown benchmark {unknown[0]!r}; "
                             f"allowed: {list(BENCHMARK_DEFAULT_PATHS)}")

    @property
    def code_execution_allowed(self) -> bool:
        return self.allow_code_execution or os.environ.get("HF_ALLOW_CODE_EVAL") == "1"

    def _check_tasks(self) -> None:
        if not self.tasks:
            raise ValueError(f"tasks: must name at least one task; allowed: {list(LOCAL_TASKS)}")
        unknown = [t for t in self.tasks if t not in LOCAL_TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown task {unknown[0]!r}; allowed: {list(LOCAL_TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: lists a task twice: {self.tasks}")
        code = [t for t in self.tasks if t in CODE_TASKS]
        if code and not self.code_execution_allowed:
            raise ValueError(f"allow_code_execution: task {code[0]} runs the programs the model writes on this "
                             "machine; opt in with eval.allow_code_execution: true (or HF_ALLOW_CODE_EVAL=1), "
                             "preferably inside a container or VM without network access")
        for task in self.tasks:
            bench = BENCHMARK_TASKS.get(task) or CODE_TASKS.get(task)
            if bench and not self.benchmarks_dir and not self.benchmark_paths.get(bench, "").startswith("/"):
                raise ValueError(f"benchmarks_dir: {task} needs the folder holding {BENCHMARK_DEFAULT_PATHS[bench]} "
                                 f"(or an absolute eval.benchmark_paths.{bench})")
