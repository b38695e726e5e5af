"""Evaluate stage: held-out perplexity and lm-eval tasks (local, offline) on a trained checkpoint.

    from pipelines.evaluation import EvalConfig, run_eval
    run_eval(EvalConfig(), "runs/demo/checkpoint", "runs/demo/tokens", "runs/demo/curated", "runs/demo/eval")

Modules: config (EvalConfig), perplexity (held-out loss), lm (BespokeLM, the lm-eval adapter
registered as "bespoke"), tasks (local task YAML + jsonl builders), runner (run_eval on Ray).
"""
from pipelines.evaluation.config import EvalConfig
from pipelines.evaluation.runner import run_eval

__all__ = ["EvalConfig", "run_eval"]
