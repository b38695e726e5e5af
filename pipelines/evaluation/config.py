"""Evaluation settings: one typed dataclass with defaults, validated on construction.

    cfg = EvalConfig(tasks=["bespoke_cloze"], limit=50)

Loaded from the `eval:` section of a run config by `pipelines.config.build`; every error message
starts with the field name so the loader can prefix the section (`eval.limit: ...`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Tasks this stage can build locally (no Hub). Each name maps to a YAML builder in tasks.py.
LOCAL_TASKS = ("bespoke_cloze", "arc_easy_local")


@dataclass
class EvalConfig:
    """What to measure on a trained checkpoint: held-out perplexity and lm-eval tasks."""

    ppl_max_tokens: int = 262_144       # cap on validation tokens scored for perplexity
    tasks: list[str] = field(default_factory=lambda: ["bespoke_cloze"])
    limit: int | None = None            # max examples per lm-eval task; None = all
    batch_size: int = 16                # sequences per forward pass (perplexity and lm-eval)
    num_fewshot: int = 0
    cloze_examples: int = 200           # how many cloze questions to build from held-out docs
    cloze_context_words: int = 32       # words of the document shown as context
    cloze_span_words: int = 8           # words in each choice (true continuation or distractor)
    max_gen_toks: int = 64              # default generation length for generate_until tasks
    benchmarks_dir: str = ""            # folder with arc/ARC-Easy-Test.jsonl, for arc_easy_local
    seed: int = 0
    num_cpus: int = 2                   # CPUs of the Ray task; torch uses this many threads
    num_gpus: int = 0                   # 1 puts the evaluation on a GPU worker

    def __post_init__(self) -> None:
        for name in ("ppl_max_tokens", "batch_size", "cloze_examples", "cloze_context_words",
                     "cloze_span_words", "max_gen_toks", "num_cpus"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        for name in ("num_fewshot", "seed", "num_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit: must be a positive integer or null (all examples), got {self.limit}")
        if not self.tasks:
            raise ValueError(f"tasks: must name at least one task; allowed: {list(LOCAL_TASKS)}")
        unknown = [t for t in self.tasks if t not in LOCAL_TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown task {unknown[0]!r}; allowed: {list(LOCAL_TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: lists a task twice: {self.tasks}")
        if "arc_easy_local" in self.tasks and not self.benchmarks_dir:
            raise ValueError("benchmarks_dir: arc_easy_local needs the folder holding arc/ARC-Easy-Test.jsonl")
