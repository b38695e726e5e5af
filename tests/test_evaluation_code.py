"""Tests for code-generation evaluation with execution (pipelines/evaluation/code_exec.py, humaneval.py).

    python -m pytest tests/test_evaluation_code.py -q

Programs really run in subprocesses under the time and memory limits: a correct solution passes, a
wrong one fails, an endless loop and a sleeping program are killed by the time limit, a memory
bomb by the memory limit, and nothing runs without the opt-in. A few HumanEval-format problems
written here go through lm-eval end to end with a scripted model, so the pass@k that comes out is
known in advance.
"""
from __future__ import annotations

import json
import math
import time

import pytest
from lm_eval.api.model import LM

from pipelines.evaluation.code_exec import pass_at_k, run_program
from pipelines.evaluation.config import EvalConfig
from pipelines.evaluation.humaneval import STOP, program, read_humaneval
from pipelines.evaluation.tasks import write_tasks

PROBLEMS = [
    {"task_id": "Test/0", "prompt": 'def add(a, b):\n    """Return a + b."""\n',
     "canonical_solution": "    return a + b\n",
     "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
     "entry_point": "add"},
    {"task_id": "Test/1", "prompt": 'def is_even(n):\n    """True when n is even."""\n',
     "canonical_solution": "    return n % 2 == 0\n",
     "test": "def check(candidate):\n    assert candidate(4)\n    assert not candidate(7)\n",
     "entry_point": "is_even"},
    {"task_id": "Test/2", "prompt": 'def reverse(s):\n    """s backwards."""\n',
     "canonical_solution": "    return s[::-1]\n",
     "test": "def check(candidate):\n    assert candidate('abc') == 'cba'\n",
     "entry_point": "reverse"},
]
WRONG = "    return None\n"


@pytest.fixture
def allowed(monkeypatch):
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")


def test_programs_run_under_time_and_memory_limits(allowed):
    add = PROBLEMS[0]
    assert run_program(program(add, add["prompt"] + add["canonical_solution"])).status == "passed"
    wrong = run_program(program(add, add["prompt"] + WRONG))
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr_tail
    t0 = time.perf_counter()
    assert run_program("while True:\n    pass\n", timeout_s=1.0).status == "timeout"     # CPU-bound
    assert run_program("import time\ntime.sleep(60)\n", timeout_s=1.0).status == "timeout"   # wall clock
    assert time.perf_counter() - t0 < 10
    bomb = run_program("x = []\nwhile True:\n    x.append(bytearray(50_000_000))\n", timeout_s=20, memory_mb=400)
    assert bomb.status == "out_of_memory" and "MemoryError" in bomb.stderr_tail
    # The same allocation fits under a larger limit: the limit, not the machine, stopped it.
    assert run_program("x = bytearray(100_000_000)\n", memory_mb=400).status == "passed"


def test_nothing_runs_without_the_opt_in(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    with pytest.raises(PermissionError, match="code execution refused.*allow_code_execution"):
        run_program("open('ran', 'w')\n")
    with pytest.raises(ValueError, match="^allow_code_execution: task humaneval_local runs the programs"):
        EvalConfig(tasks=["humaneval_local"], benchmarks_dir=str(tmp_path))
    assert EvalConfig(tasks=["humaneval_local"], benchmarks_dir=str(tmp_path), allow_code_execution=True)
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")                      # lm-eval's convention also opts in
    assert EvalConfig(tasks=["humaneval_local"], benchmarks_dir=str(tmp_path)).code_execution_allowed


def test_pass_at_k_is_the_unbiased_estimator():
    for n in (1, 5, 20):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(5, 6, 1)


def _write(path, problems) -> None:
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))


class ScriptedLM(LM):
    """Answers each prompt from a script: a list of completions, one per repeat, in order."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        super().__init__()
        self.script, self.calls, self.gen_kwargs = script, {}, []

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for req in requests:
            context, kwargs = req.args
            self.gen_kwargs.append(kwargs)
            i = self.calls[context] = self.calls.get(context, -1) + 1
            out.append(self.script[context][i])
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def _evaluate(cfg: EvalConfig, task_dir, lm: LM) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    info = write_tasks(cfg, None, task_dir)["humaneval_local"]
    out = lm_eval.simple_evaluate(model=lm, tasks=["humaneval_local"], confirm_run_unsafe_code=True,
                                  task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))
    return {"info": info, "results": out["results"]["humaneval_local"]}


def test_humaneval_task_through_lm_eval_scores_pass_at_k(allowed, tmp_path):
    _write(tmp_path / "he.jsonl", PROBLEMS)
    cfg = EvalConfig(tasks=["humaneval_local"], benchmark_paths={"humaneval": str(tmp_path / "he.jsonl")},
                     allow_code_execution=True, code_timeout_s=5)
    greedy = {p["prompt"]: [p["canonical_solution"] if i < 2 else WRONG] for i, p in enumerate(PROBLEMS)}
    lm = ScriptedLM(greedy)
    out = _evaluate(cfg, tmp_path / "greedy", lm)
    assert out["info"] == {"examples": 3, "chance": 0.0, "metric": "pass@1,create_test"}
    assert out["results"]["pass@1,create_test"] == pytest.approx(2 / 3)
    assert lm.gen_kwargs[0]["until"] == STOP and lm.gen_kwargs[0]["do_sample"] is False
    # 10 samples per problem, 3/10/0 correct: pass@1 and pass@10 averaged over the problems.
    cfg = EvalConfig(tasks=["humaneval_local"], benchmark_paths={"humaneval": str(tmp_path / "he.jsonl")},
                     allow_code_execution=True, code_samples=10, code_timeout_s=5)
    good = [3, 10, 0]
    sampled = {p["prompt"]: [p["canonical_solution"]] * g + [WRONG] * (10 - g) for p, g in zip(PROBLEMS, good)}
    out = _evaluate(cfg, tmp_path / "sampled", ScriptedLM(sampled))["results"]
    assert out["pass@1,create_test"] == pytest.approx((0.3 + 1.0 + 0.0) / 3)
    assert out["pass@10,create_test"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)


def test_a_problem_file_missing_a_field_names_the_line(tmp_path):
    bad = dict(PROBLEMS[0])
    del bad["entry_point"]
    _write(tmp_path / "bad.jsonl", [PROBLEMS[1], bad])
    with pytest.raises(ValueError, match="line 2 has no string 'entry_point'"):
        read_humaneval(tmp_path / "bad.jsonl")


def test_run_eval_passes_the_opt_in_to_its_job(monkeypatch, tmp_path, one_torch_thread):
    """eval.allow_code_execution alone (no HF_ALLOW_CODE_EVAL here) lets the job run the programs."""
    import torch

    from modeling.checkpoint import save_model
    from modeling.config import ModelConfig
    from modeling.tokenizer import Tokenizer
    from modeling.transformer import Transformer
    from pipelines.evaluation import run_eval

    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    tok = Tokenizer.train([p["prompt"] + p["canonical_solution"] for p in PROBLEMS] * 20, vocab_size=300)
    torch.manual_seed(0)
    save_model(tmp_path / "model", Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1,
                                                           n_heads=2, max_seq_len=128)).eval(), tok)
    _write(tmp_path / "he.jsonl", PROBLEMS)
    cfg = EvalConfig(tasks=["humaneval_local"], benchmark_paths={"humaneval": str(tmp_path / "he.jsonl")},
                     allow_code_execution=True, code_max_gen_toks=16, num_cpus=1)
    res = run_eval(cfg, tmp_path / "model", None, None, tmp_path / "eval", progress=lambda _: None)
    entry = res["tasks"]["humaneval_local"]
    assert entry["n"] == 3 and entry["acc"] == 0.0 and entry["metric"] == "pass@1,create_test"
    assert "| humaneval_local | pass@1 (create_test) | 3 |" in (tmp_path / "eval" / "report.md").read_text()
