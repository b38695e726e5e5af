"""Tests for the evaluate stage (pipelines/evaluation): the lm-eval adapter, perplexity, local tasks.

    RAY_AUTH_MODE=disabled HF_DATASETS_OFFLINE=1 python -m pytest tests/test_evaluation.py -x -q

A tiny model and tokenizer are trained once per module on real text (tinyshakespeare from
../shared/data when present, else the docstrings of the Python standard library), so scores are
compared against the model's own log-probs computed directly, not against magic numbers.
"""
from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
import yaml
from lm_eval.api.instance import Instance

from modeling.checkpoint import save_model
from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer, lm_loss
from pipelines.config import ConfigError, build
from pipelines.evaluation import EvalConfig, run_eval, run_eval_many
from pipelines.evaluation.lm import BespokeLM
from pipelines.evaluation.perplexity import perplexity
from pipelines.evaluation.tasks import build_cloze, read_documents, write_tasks

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared/data/text/tinyshakespeare.txt"
SEQ = 64


# ---- fixtures: real text, a tokenizer, a briefly trained model, a run folder --------------------

def _documents() -> list[str]:
    """~150-word documents of real text: Shakespeare speeches grouped, or stdlib docstrings."""
    if SHAKESPEARE.is_file():
        paragraphs = SHAKESPEARE.read_text().split("\n\n")
    else:
        paragraphs = []
        for name in ("os", "json", "argparse", "collections", "inspect", "typing", "pathlib",
                     "subprocess", "logging", "functools", "itertools", "re", "datetime", "email"):
            mod = importlib.import_module(name)
            paragraphs += [obj.__doc__ for obj in vars(mod).values()
                           if isinstance(getattr(obj, "__doc__", None), str) and obj.__doc__.strip()]
    docs, current = [], []
    for p in paragraphs:
        current.append(p.strip())
        if sum(len(c.split()) for c in current) >= 150:
            docs.append("\n\n".join(current))
            current = []
    return docs


def _train(model: Transformer, stream: np.ndarray, steps: int, batch: int = 16) -> None:
    """A hundred-odd AdamW steps on random windows: enough to learn local statistics."""
    gen = torch.Generator().manual_seed(0)
    data = torch.from_numpy(stream.astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - SEQ - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + SEQ] for s in starts])          # (B, T)
        y = torch.stack([data[s + 1:s + SEQ + 1] for s in starts])  # (B, T)
        loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> dict:
    # One thread: on 2 shared cores a second thread slows tiny-model training several times over
    # whenever anything else runs (see ../shared/NOTES.md).
    torch.set_num_threads(1)
    docs = _documents()
    n_val = max(40, len(docs) // 10)
    train_docs, val_docs = docs[:-n_val], docs[-n_val:]
    tok = Tokenizer.train(train_docs, vocab_size=512)
    root = tmp_path_factory.mktemp("run")

    def stream(texts):
        ids = []
        for t in texts:
            ids += tok.encode(t) + [tok.eos_id]
        return np.array(ids, dtype=np.uint16)

    train_stream, val_stream = stream(train_docs), stream(val_docs)
    (root / "tokens").mkdir()
    val_stream.tofile(root / "tokens" / "val.bin")
    counts = np.bincount(train_stream, minlength=tok.vocab_size) + 1
    unigram = float(-(np.log(counts / counts.sum())[val_stream]).mean())
    meta = {"dtype": "uint16", "vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "unigram_val_loss": unigram,
            "val": {"tokens": len(val_stream), "chars": sum(map(len, val_docs))}}
    (root / "tokens" / "meta.json").write_text(json.dumps(meta))
    (root / "curated" / "val").mkdir(parents=True)
    table = pa.table({"id": [f"doc{i:04d}" for i in range(len(val_docs))], "text": val_docs,
                      "url": [""] * len(val_docs), "source": ["test"] * len(val_docs)})
    pq.write_table(table, root / "curated" / "val" / "part-0.parquet")

    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, max_seq_len=SEQ)
    torch.manual_seed(0)
    random_model = Transformer(cfg).eval()
    trained = Transformer(cfg)
    trained.load_state_dict(random_model.state_dict())
    t0 = time.perf_counter()
    _train(trained, train_stream, steps=120, batch=12)
    train_s = time.perf_counter() - t0
    save_model(root / "random", random_model, tok)
    save_model(root / "trained", trained, tok)
    return {"root": root, "tok": tok, "model": trained, "random": random_model, "val": val_stream,
            "val_docs": val_docs, "train_s": train_s}


def _logprobs(model: Transformer, ids: list[int]) -> torch.Tensor:
    """log P(ids[i] | ids[:i]) for i >= 1, by one direct forward pass: (len(ids)-1,)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))[0]                 # (T, V)
    return F.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def _instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


# ---- config --------------------------------------------------------------------------------------

def test_config_defaults_and_errors_name_the_field():
    cfg = EvalConfig()
    assert cfg.tasks == ["bespoke_cloze"] and cfg.num_fewshot is None and cfg.limit is None
    for kwargs, field in [({"batch_size": 0}, "batch_size"), ({"tasks": ["hellaswag"]}, "tasks"),
                          ({"limit": 0}, "limit"), ({"tasks": []}, "tasks"),
                          ({"tasks": ["arc_easy_local"]}, "benchmarks_dir"), ({"num_fewshot": -1}, "num_fewshot"),
                          ({"benchmark_paths": {"squad": "/x"}}, "benchmark_paths")]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            EvalConfig(**kwargs)
    with pytest.raises(ConfigError, match=r"^eval\.ppl_max_tokens: "):
        build(EvalConfig, {"ppl_max_tokens": -1}, "eval")
    assert build(EvalConfig, {"limit": None, "tasks": ["bespoke_cloze"]}, "eval").limit is None


# ---- the lm-eval adapter -------------------------------------------------------------------------

def test_loglikelihood_equals_direct_logprobs_and_truncates_left(run_dir):
    model, tok = run_dir["model"], run_dir["tok"]
    lm = BespokeLM(model, tok, batch_size=3)
    long_context = " ".join(run_dir["val_docs"][:2])                 # far more than SEQ tokens
    pairs = [("To be, or not to be:", " that is the question"), ("My lord", ","),
             (long_context, " and so farewell"), ("", "Hello there")]
    got = lm.loglikelihood(_instances("loglikelihood", pairs))
    for (context, continuation), (logprob, _) in zip(pairs, got):
        whole = tok.encode(context + continuation)
        n_cont = len(whole) - len(tok.encode(context))
        if not context:
            whole = [tok.eos_id] + whole                           # empty context: eos is the prefix
        ids = whole[-(SEQ + 1):]
        expected = _logprobs(model, ids)[-n_cont:].sum().item()
        assert logprob == pytest.approx(expected, abs=1e-4)


def test_one_token_answers_to_one_question_share_a_forward_row(run_dir):
    model, tok = run_dir["model"], run_dir["tok"]
    lm = BespokeLM(model, tok, batch_size=8)
    rows_seen = []
    forward = lm._forward
    lm._forward = lambda rows: rows_seen.append(len(rows)) or forward(rows)
    context = tok.encode("Which is right?\nAnswer:")
    letters = [[t] for t in (101, 202, 303, 404)]                    # four one-token answers
    got = lm._loglikelihood_tokens([((None, None), context, ids) for ids in letters] +
                                   [((None, None), context + letters[0], letters[1])], disable_tqdm=True)
    assert rows_seen == [2]                                          # 5 requests, 2 distinct inputs
    for ids, (logprob, _) in zip(letters, got):
        assert logprob == pytest.approx(_logprobs(model, context + ids)[-1].item(), abs=1e-4)
    assert got[4][0] == pytest.approx(_logprobs(model, context + letters[0] + letters[1])[-1].item(), abs=1e-4)


def test_is_greedy_is_true_exactly_for_the_argmax_continuation(run_dir):
    model, tok = run_dir["model"], run_dir["tok"]
    lm = BespokeLM(model, tok)
    context = tok.encode("KING RICHARD III:\nNow is the winter")
    greedy = []
    for _ in range(4):
        with torch.no_grad():
            greedy.append(int(model(torch.tensor([context + greedy]))[0, -1].argmax()))
    other = greedy[:3] + [(greedy[3] + 1) % tok.vocab_size]
    (lp_g, is_g), (lp_o, is_o) = lm._loglikelihood_tokens(
        [((None, None), context, greedy), ((None, None), context, other)], disable_tqdm=True)
    assert is_g and not is_o and lp_g > lp_o


def test_loglikelihood_rolling_scores_every_token_once_over_windows(run_dir):
    model, tok = run_dir["model"], run_dir["tok"]
    text = run_dir["val_docs"][0] + run_dir["val_docs"][1]
    ids = tok.encode(text)
    assert len(ids) > 2 * SEQ + 5                                    # several windows, a partial last one
    # Reference: disjoint chunks of SEQ predictions; the first is conditioned on eos, the last
    # (partial) chunk keeps a full SEQ-token context.
    padded, expected, done = [tok.eos_id] + ids, 0.0, 0
    while done < len(ids):
        n = min(SEQ, len(ids) - done)
        end = done + n                                               # predict ids[done:end]
        window = padded[max(0, end - SEQ):end + 1]                   # SEQ inputs + the last target
        expected += _logprobs(model, window)[-n:].sum().item()
        done = end
    got = BespokeLM(model, tok, batch_size=2).loglikelihood_rolling(_instances("loglikelihood_rolling", [(text,), ("Hi",)]))
    assert got[0] == pytest.approx(expected, rel=1e-5)
    assert got[1] == pytest.approx(_logprobs(model, [tok.eos_id] + tok.encode("Hi")).sum().item(), abs=1e-4)


def test_generate_until_cuts_at_the_first_stop_string(run_dir):
    lm = BespokeLM(run_dir["model"], run_dir["tok"])
    context = "ROMEO:\nBut soft, what light"
    full = lm.generate_until(_instances("generate_until", [(context, {"until": [], "max_gen_toks": 30})]))[0]
    assert 0 < len(run_dir["tok"].encode(full)) <= 30
    stop = full[len(full) // 2:len(full) // 2 + 2]
    assert stop.strip(), f"pick a visible stop string from {full!r}"
    cut = lm.generate_until(_instances("generate_until", [(context, {"until": [stop, "@@never@@"], "max_gen_toks": 30})]))[0]
    assert cut == full[:full.find(stop)] and stop not in cut
    contexts = [context, "JULIET:\nO Romeo", "KING:\nWhat say you"]      # batched (2 a row) == one by one
    gen = {"until": ["\n\n"], "max_gen_toks": 12}
    batched = BespokeLM(run_dir["model"], run_dir["tok"], batch_size=2).generate_until(
        _instances("generate_until", [(c, gen) for c in contexts]))
    assert batched == [lm.generate_until(_instances("generate_until", [(c, gen)]))[0] for c in contexts]
    long_context = " ".join(run_dir["val_docs"][:3])                # longer than max_seq_len: left-truncated
    assert lm.generate_until(_instances("generate_until", [(long_context, {"until": ["\n\n"], "max_gen_toks": 8})]))[0] is not None


# ---- perplexity ----------------------------------------------------------------------------------

def test_perplexity_matches_direct_computation_and_is_deterministic(run_dir):
    model, val = run_dir["model"], run_dir["val"]
    stats = perplexity(model, val, seq_len=SEQ, max_tokens=1000, batch_size=4)
    assert stats["tokens"] == 1000 and stats["windows"] == math.ceil(1000 / SEQ)
    assert stats["perplexity"] == pytest.approx(math.exp(stats["loss"]))
    nll = torch.cat([-_logprobs(model, val[s:min(s + SEQ, 1000) + 1].tolist()) for s in range(0, 1000, SEQ)])
    assert nll.numel() == 1000 and stats["loss"] == pytest.approx(nll.double().mean().item(), rel=1e-5)
    again = perplexity(model, val, seq_len=SEQ, max_tokens=1000, batch_size=7)
    assert again["loss"] == pytest.approx(stats["loss"], rel=1e-6)


# ---- local tasks ---------------------------------------------------------------------------------

def test_cloze_task_is_deterministic_and_its_answer_is_the_true_continuation(run_dir, tmp_path):
    root = run_dir["root"]
    cfg = EvalConfig(cloze_examples=30, cloze_context_words=20, cloze_span_words=6, seed=3)
    built = write_tasks(cfg, root / "curated", tmp_path / "a")
    write_tasks(cfg, root / "curated", tmp_path / "b")
    assert built == {"bespoke_cloze": {"examples": 30, "chance": 0.25, "metric": "acc,none"}}
    a = (tmp_path / "a" / "bespoke_cloze.jsonl").read_text()
    assert a == (tmp_path / "b" / "bespoke_cloze.jsonl").read_text()
    docs = dict(read_documents(root / "curated"))
    labels = []
    for rec in map(json.loads, a.splitlines()):
        doc_id, start = rec["id"].rsplit(":", 1)                     # one question per 26-word window
        words = docs[doc_id].split()[int(start):]
        assert int(start) % 26 == 0
        assert rec["context"] == " ".join(words[:20])
        assert rec["choices"][rec["label"]] == " ".join(words[20:26])
        assert len(set(rec["choices"])) == 4 and all(len(c.split()) == 6 for c in rec["choices"])
        labels.append(rec["label"])
    assert len(set(labels)) > 1                                      # the answer is not always in one slot
    spec = yaml.safe_load((tmp_path / "a" / "bespoke_cloze.yaml").read_text())
    assert spec["dataset_path"] == "json" and spec["output_type"] == "multiple_choice"
    assert Path(spec["dataset_kwargs"]["data_files"]["test"]).is_file()
    other = build_cloze(sorted(docs.items()), 30, 20, 6, seed=4)
    assert [json.loads(line) for line in a.splitlines()] != other


def test_simple_evaluate_runs_offline_on_the_cloze_task(run_dir, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    write_tasks(EvalConfig(cloze_examples=40), run_dir["root"] / "curated", tmp_path)
    out = lm_eval.simple_evaluate(model=BespokeLM(run_dir["model"], run_dir["tok"]), tasks=["bespoke_cloze"],
                                  limit=20, task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
                                  log_samples=False)
    res = out["results"]["bespoke_cloze"]
    assert 0.0 <= res["acc,none"] <= 1.0 and 0.0 <= res["acc_norm,none"] <= 1.0
    assert out["n-samples"]["bespoke_cloze"]["effective"] == 20


def test_model_is_registered_by_name_and_loads_a_checkpoint(run_dir, tmp_path):
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    assert get_model("bespoke") is BespokeLM and get_model("dummy").__name__ == "DummyLM"
    write_tasks(EvalConfig(cloze_examples=10), run_dir["root"] / "curated", tmp_path)
    out = lm_eval.simple_evaluate(model="bespoke", model_args=f"checkpoint={run_dir['root'] / 'trained'}",
                                  tasks=["bespoke_cloze"], batch_size=8, log_samples=False,
                                  task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False))
    assert out["n-samples"]["bespoke_cloze"]["effective"] == 10


# ---- the stage -----------------------------------------------------------------------------------

RESULT_KEYS = {"checkpoint", "config", "timing", "unigram_val_loss", "val_loss", "perplexity", "val_tokens",
               "bits_per_byte", "tasks", "lm_eval_version"}


def _check(results: dict, out: Path) -> None:
    assert json.loads((out / "results.json").read_text()) == results
    assert "| bespoke_cloze | acc | 60 |" in (out / "report.md").read_text()
    assert RESULT_KEYS <= set(results) and results["tasks"]["bespoke_cloze"]["n"] == 60
    cloze = results["tasks"]["bespoke_cloze"]
    assert {"acc", "acc_stderr", "acc_norm", "n", "chance"} <= set(cloze) and cloze["chance"] == 0.25


def test_checkpoints_side_by_side_on_ray_and_alone_in_process(run_dir, tmp_path, ray_session, monkeypatch):
    root = run_dir["root"]
    cfg = EvalConfig(ppl_max_tokens=4000, cloze_examples=60, batch_size=16)
    lines: list[str] = []
    both = run_eval_many(cfg, [root / "trained", root / "random"], root / "tokens", root / "curated",
                         tmp_path / "many", progress=lines.append)   # 4 Ray tasks: (model, job) pairs
    assert lines and all(line.startswith("evaluate: ") for line in lines)
    assert "evaluate: 4 jobs over 2 checkpoint(s), one model replica each" in lines
    trained, random = both["trained"], both["random"]
    for label in both:
        _check(both[label], tmp_path / "many" / label)
    table = (tmp_path / "many" / "compare.md").read_text()
    assert "| | chance | trained | random |" in table and "| bespoke_cloze (acc, n=60) | 0.250 |" in table
    assert trained["perplexity"] < 0.5 * random["perplexity"]
    assert trained["val_loss"] < trained["unigram_val_loss"]       # it learned more than word counts
    # bits per byte: loss in bits over the UTF-8 bytes per token of the val text.
    bytes_per_token = sum(len(d.encode()) for d in run_dir["val_docs"]) / len(run_dir["val"])
    assert trained["bits_per_byte"] == pytest.approx(trained["val_loss"] / math.log(2) / bytes_per_token)
    monkeypatch.setattr(ray_session, "is_initialized", lambda: False)
    alone = run_eval(cfg, root / "trained", root / "tokens", root / "curated", tmp_path / "one")  # in this process
    _check(alone, tmp_path / "one")
    assert alone["tasks"]["bespoke_cloze"]["acc"] == trained["tasks"]["bespoke_cloze"]["acc"]
    assert alone["val_loss"] == pytest.approx(trained["val_loss"], rel=1e-6)
    print(f"\ntrained the fixture model in {run_dir['train_s']:.1f} s; cloze acc trained {trained['tasks']['bespoke_cloze']['acc']:.3f} "
          f"vs random {random['tasks']['bespoke_cloze']['acc']:.3f}; ppl {trained['perplexity']:.1f} "
          f"vs {random['perplexity']:.1f} (unigram {math.exp(trained['unigram_val_loss']):.1f}); "
          f"{trained['bits_per_byte']:.3f} bits/byte")


def test_run_eval_fails_fast_without_a_checkpoint_or_curated_data(run_dir, tmp_path):
    root = run_dir["root"]
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        run_eval(EvalConfig(), tmp_path / "nothing", root / "tokens", root / "curated", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="curate"):
        run_eval(EvalConfig(), root / "trained", root / "tokens", tmp_path / "empty", tmp_path / "out")


def test_bespoke_eval_puts_checkpoints_side_by_side_and_an_hf_export_scores_the_same(run_dir, tmp_path,
                                                                                      ray_session, capsys):
    from modeling.hf import export_hf
    from pipelines.cli import main

    root = run_dir["root"]
    export_hf(run_dir["model"], run_dir["tok"], tmp_path / "hf")       # a Hugging Face Llama folder
    args = ["eval", "--checkpoint", f"ours={root / 'trained'}", "--checkpoint", f"hf={tmp_path / 'hf'}",
            "--name", root.name, "--set", f"runs_dir={root.parent}", "--set", "eval.cloze_examples=40",
            "--set", "eval.ppl_max_tokens=2000", "--set", "eval.num_cpus=1"]
    assert main(args) == 0
    out = root / "eval"
    both = json.loads((out / "compare.json").read_text())
    assert list(both) == ["ours", "hf"] and (out / "ours" / "results.json").is_file()
    ours, hf = both["ours"], both["hf"]
    assert hf["checkpoint"] == str((tmp_path / "hf").resolve())
    assert hf["tasks"]["bespoke_cloze"]["acc"] == ours["tasks"]["bespoke_cloze"]["acc"]
    assert hf["val_loss"] == pytest.approx(ours["val_loss"], rel=1e-5)
    table = (out / "compare.md").read_text()
    assert "| | chance | ours | hf |" in table and "| bespoke_cloze (acc, n=40) | 0.250 |" in table
    assert '"compare":' in capsys.readouterr().out
    # A label used twice is a config error (exit 2), and a folder with no model says so (exit 1).
    assert main(args[:3] + ["--checkpoint", f"ours={tmp_path / 'hf'}"] + args[5:]) == 2
    assert main(args[:3] + ["--checkpoint", str(tmp_path)] + args[5:]) == 1
    assert "holds no model.safetensors" in capsys.readouterr().err


def test_checkpoint_specs_take_labels_paths_and_this_runs_models(tmp_path):
    from pipelines.run_config import load_run_config
    from pipelines.stages import eval_checkpoints

    cfg = load_run_config(None, [f"runs_dir={tmp_path}"])
    for folder, data in (("train", {"model_dir": "/p/model", "metrics": {"val_loss": 3.0}}),
                         ("tune", {"best_model_dir": "/t/model", "best_metrics": {"val_loss": 2.5},
                                   "best_config": {}})):
        getattr(cfg.paths, folder).mkdir(parents=True)
        (getattr(cfg.paths, folder) / "result.json").write_text(json.dumps(data))
    a, b = tmp_path / "x" / "trial_1" / "model", tmp_path / "y" / "trial_1" / "model"
    a.mkdir(parents=True), b.mkdir(parents=True)
    got = eval_checkpoints(cfg, ["base=pretrain", "tune", "best", str(a), str(b)])
    assert got == {"base": "/p/model", "tune": "/t/model", "best": "/t/model",
                   "x/trial_1/model": str(a), "y/trial_1/model": str(b)}
    with pytest.raises(ConfigError, match="label 'base' is used twice"):
        eval_checkpoints(cfg, ["base=pretrain", "base=tune"])
