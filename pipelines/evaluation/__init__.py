"""Evaluate stage: held-out perplexity, bits per byte and lm-eval tasks (local, offline) on checkpoints.

    from pipelines.evaluation import EvalConfig, compare, run_eval, run_eval_many
    run_eval(EvalConfig(), "runs/demo/checkpoint", "runs/demo/tokens", "runs/demo/curated", "runs/demo/eval")
    run_eval_many(EvalConfig(), ["runs/a/model", "runs/b/model"], tokens, curated, "runs/compare")

Modules: config (EvalConfig), perplexity (held-out loss), lm (BespokeLM, the lm-eval adapter
registered as "bespoke"), tasks (task builders; the cloze task), benchmarks (ARC, HellaSwag, MMLU,
TruthfulQA, GSM8K from local files), humaneval + code_exec (code generation scored by running
the programs under time and memory limits, opt-in only), jobs (one Ray task per checkpoint and task), runner
(run_eval, run_eval_many), tables (markdown reports, compare).
"""
from pipelines.evaluation.config import EvalConfig
from pipelines.evaluation.runner import run_eval, run_eval_many
from pipelines.evaluation.tables import compare

__all__ = ["EvalConfig", "compare", "run_eval", "run_eval_many"]
