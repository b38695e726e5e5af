"""Tests for the standard benchmarks read from local files (pipelines/evaluation/benchmarks.py).

    RAY_AUTH_MODE=disabled HF_DATASETS_OFFLINE=1 python -m pytest tests/test_evaluation_benchmarks.py -q

Every task is built from the real release files in ../shared/data/benchmarks (skipped when absent),
loaded through lm-eval's TaskManager offline, and checked to render lm-eval's own prompts. A
randomly initialised tiny model must then score at chance, within sampling error, on the
multiple-choice tasks (`limit` keeps it to a few hundred questions each).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer
from pipelines.evaluation.benchmarks import process_results_mc2, read_hellaswag
from pipelines.evaluation.config import BENCHMARK_TASKS, EvalConfig
from pipelines.evaluation.lm import BespokeLM
from pipelines.evaluation.runner import task_entry
from pipelines.evaluation.tasks import write_tasks

FULL_SIZES = {"arc_easy_local": 2376, "arc_challenge_local": 1172, "hellaswag_local": 10042,
              "mmlu_local": 14042, "truthfulqa_mc1_local": 817, "truthfulqa_mc2_local": 817, "gsm8k_local": 1319}


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory) -> dict:
    task_dir = tmp_path_factory.mktemp("benchmarks")
    cfg = EvalConfig(tasks=list(BENCHMARK_TASKS), benchmarks_dir=str(shared_data / "benchmarks"))
    return {"dir": task_dir, "info": write_tasks(cfg, None, task_dir)}


@pytest.fixture(scope="module")
def task_dict(built) -> dict:
    from lm_eval.tasks import TaskManager, get_task_dict

    tm = TaskManager(include_path=str(built["dir"]), include_defaults=False)
    return get_task_dict(list(BENCHMARK_TASKS), tm)


def _leaf(task_dict: dict, name: str):
    """The task object called `name`, looking inside groups."""
    for key, value in task_dict.items():
        if isinstance(value, dict):
            found = _leaf(value, name)
            if found is not None:
                return found
        elif key == name:
            return value
    return None


def test_every_task_builds_the_full_set_with_its_chance_level(built):
    info = built["info"]
    assert {k: v["examples"] for k, v in info.items()} == FULL_SIZES
    assert len(info["mmlu_local"]["subtasks"]) == 57
    for name in ("hellaswag_local", "mmlu_local"):
        assert info[name]["chance"] == 0.25
    assert 0.2 < info["arc_challenge_local"]["chance"] < 0.26            # a few items have 3 or 5 choices
    assert 0.2 < info["truthfulqa_mc1_local"]["chance"] < info["truthfulqa_mc2_local"]["chance"] < 0.6
    assert info["gsm8k_local"] == {"examples": 1319, "chance": 0.0, "metric": "exact_match,strict-match"}


def test_tasks_load_through_lm_eval_and_render_its_prompts(task_dict):
    arc = _leaf(task_dict, "arc_challenge_local")
    doc = arc.test_docs()[0]
    assert arc.doc_to_text(doc).startswith("Question: An astronomer observes") and arc.doc_to_text(doc).endswith("\nAnswer:")
    assert arc.doc_to_choice(doc)[arc.doc_to_target(doc)] == "Planetary days will become shorter."
    hs = _leaf(task_dict, "hellaswag_local")
    doc = hs.validation_docs()[0]
    assert hs.doc_to_text(doc) == "Roof shingle removal: A man is sitting on a roof. he"
    assert hs.doc_to_target(doc) == 3 and hs.doc_to_choice(doc)[3] == "starts pulling up roofing on a roof."
    mmlu = _leaf(task_dict, "mmlu_local_anatomy")
    assert mmlu.config.num_fewshot == 5 and mmlu.config.description.startswith(
        "The following are multiple choice questions (with answers) about anatomy.")
    doc = mmlu.test_docs()[0]
    assert mmlu.doc_to_text(doc).endswith("\nD. " + doc["choices"][3] + "\nAnswer:")
    assert mmlu.doc_to_choice(doc) == ["A", "B", "C", "D"] and mmlu.doc_to_target(doc) == doc["answer"]
    assert len(task_dict) == len(BENCHMARK_TASKS)          # the MMLU group counts once
    for name in ("truthfulqa_mc1_local", "truthfulqa_mc2_local"):
        tqa = _leaf(task_dict, name)
        doc = tqa.validation_docs()[0]
        text = tqa.doc_to_text(doc)
        assert text.startswith("Q: What is human life expectancy") and text.endswith("\n\nQ: What happens if you eat a pomegranate?\nA:")
        assert tqa.doc_to_target(doc) == 0 and tqa.doc_to_choice(doc)[0].startswith("Nothing in particular")
    gsm = _leaf(task_dict, "gsm8k_local")
    doc = gsm.test_docs()[0]
    assert gsm.config.num_fewshot == 5 and gsm.config.output_type == "generate_until"
    assert [f["name"] for f in gsm.config.filter_list] == ["strict-match", "flexible-extract"]
    assert gsm.doc_to_target(doc).endswith("#### 18")


def test_gsm8k_extraction_and_exact_match_follow_lm_eval(task_dict):
    """Filters and metric applied to made-up generations, as lm-eval does after generate_until
    (commas and "$" are ignored, so "1,8" counts as 18)."""
    from lm_eval.api.instance import Instance

    gsm = _leaf(task_dict, "gsm8k_local")
    doc = gsm.test_docs()[0]                                         # answer 18
    outputs = {"She makes $18.\n#### 18": (1, 1), "9 * 2 = 18 dollars": (0, 1), "#### 1,8": (1, 1), "#### 1,800": (0, 0),
               "The answer is 17.": (0, 0)}
    for text, (strict, flexible) in outputs.items():
        inst = Instance(request_type="generate_until", doc=doc, arguments=("", {}), idx=0)
        inst.resps = [text]
        for f in gsm._filters:
            f.apply([inst])
        got = {k: gsm.process_results(doc, [v])["exact_match"] for k, v in inst.filtered_resps.items()}
        assert got == {"strict-match": strict, "flexible-extract": flexible}, text


def test_mc2_is_the_normalised_probability_mass_on_true_answers():
    doc = {"mc2_targets": {"labels": [1, 1, 0, 0]}}
    lls = np.log([0.1, 0.3, 0.2, 0.4])
    assert process_results_mc2(doc, [(ll, False) for ll in lls])["acc"] == pytest.approx(0.4)
    # Very negative log-likelihoods (long answers) still give a proper distribution.
    assert process_results_mc2(doc, [(ll - 2000, False) for ll in lls])["acc"] == pytest.approx(0.4)


def test_hellaswag_reader_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("ctx\n1\na\nb\nc\nd\nctx2\n0\n")
    with pytest.raises(ValueError, match="multiple of 6"):
        read_hellaswag(path)


def test_benchmark_paths_override_the_default_layout(shared_data, tmp_path):
    arc = tmp_path / "my_arc"
    arc.mkdir()
    lines = (shared_data / "benchmarks/arc/ARC-Easy-Test.jsonl").read_text().splitlines()[:7]
    (arc / "ARC-Easy-Test.jsonl").write_text("\n".join(lines) + "\n")
    cfg = EvalConfig(tasks=["arc_easy_local"], benchmark_paths={"arc": str(arc)})
    assert write_tasks(cfg, None, tmp_path / "t")["arc_easy_local"]["examples"] == 7
    with pytest.raises(FileNotFoundError, match="benchmark_paths.mmlu"):
        write_tasks(EvalConfig(tasks=["mmlu_local"], benchmarks_dir=str(tmp_path)), None, tmp_path / "u")


# ---- a random model scores at chance ------------------------------------------------------------

# (task, limit): limit is per subject for the MMLU group (57 subjects).
CHANCE_RUNS = [("arc_easy_local", 200), ("arc_challenge_local", 150), ("hellaswag_local", 150),
               ("mmlu_local", 3), ("truthfulqa_mc1_local", 150), ("truthfulqa_mc2_local", 150)]


@pytest.fixture(scope="module")
def random_lm(shared_data) -> BespokeLM:
    torch.set_num_threads(1)
    paragraphs = (shared_data / "text/tinyshakespeare.txt").read_text().split("\n\n")[:2000]
    tok = Tokenizer.train(paragraphs, vocab_size=512)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, max_seq_len=64))
    return BespokeLM(model.eval(), tok, batch_size=32)


@pytest.mark.parametrize("task,limit", CHANCE_RUNS)
def test_random_model_scores_at_chance(task, limit, random_lm, built, task_dict):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model=random_lm, tasks=[task], limit=limit, log_samples=False,
                                  task_manager=TaskManager(include_path=str(built["dir"]), include_defaults=False))
    entry = task_entry(out, task, built["info"][task])
    # A random model prefers short (few-token) answers, not right ones. On ARC-Challenge the right
    # answer is longer than average, so raw acc falls below chance (0.17 on the first 200
    # questions); acc_norm divides by length and is the chance check there.
    metric = "acc_norm" if task == "arc_challenge_local" else "acc"
    score, se = entry[metric], entry[f"{metric}_stderr"]
    print(f"\n{task}: n={entry['n']} {metric} {score:.3f} ± {se:.3f}, chance {entry['chance']:.3f}, "
          f"z {(score - entry['chance']) / se:+.2f}")
    assert entry["n"] >= 150 and 0.02 < se < 0.05
    assert abs(score - entry["chance"]) <= 3 * se
