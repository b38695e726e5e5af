"""`bespoke generate` end to end: every generation flag reaches the batched decoder, for a
decoder-only and an encoder-decoder checkpoint (pipelines/generate.py, pipelines/cli.py).

    python -m pytest tests/test_generate_cli.py -q

Tiny random models saved as model folders; generation runs as a Ray task as in a real run.
"""
from __future__ import annotations

import json

import pytest
import torch

from modeling.checkpoint import save_model
from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.generation import generate_batch, generate_seq2seq
from modeling.tokenizer import Tokenizer
from pipelines.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TEXTS = ["def main(argv):\n    return parse(argv) or 0\n" * 20,
         "The os module provides a portable way of using operating system functionality. " * 20]
PROMPTS = ["def main", "The os module provides a"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=320)


def _model(tok: Tokenizer, **kwargs):
    """An untied random model with scaled-up weights, so its greedy output depends on the prompt."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                    max_seq_len=48, tie_embeddings=False, **kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model


def _generate(tmp_path, model_dir, *flags: str) -> list[dict]:
    code = main(["generate", "--checkpoint", str(model_dir), "--set", f"runs_dir={tmp_path}", "--name", "g",
                 "--prompt", *PROMPTS, *flags])
    assert code == 0
    record = json.loads((tmp_path / "g" / "generate" / "samples.json").read_text())
    return record


def test_flags_reach_batched_decoder_only_generation(ray_session, tok, tmp_path):
    model = _model(tok)
    save_model(tmp_path / "ckpt" / "model", model, tok)                   # a Ray Train checkpoint layout
    ids = [tok.encode(p) for p in PROMPTS]
    want = generate_batch(model, ids, 12, temperature=0, pad_id=tok.pad_id, eos_id=tok.eos_id,
                          repetition_penalty=1.5)
    plain = generate_batch(model, ids, 12, temperature=0, pad_id=tok.pad_id, eos_id=tok.eos_id)
    assert want != plain                                                  # the penalty changes the output
    text = tok.decode(want[1])
    stop = text[4:6]                                                      # occurs in row 1's output
    record = _generate(tmp_path, tmp_path / "ckpt", "--max-new-tokens", "12", "--temperature", "0",
                       "--repetition-penalty", "1.5", "--stop", stop, "--stop", "\\u0000never", "--seed", "7")
    cfg = record["config"]
    assert (cfg["max_new_tokens"], cfg["temperature"], cfg["repetition_penalty"], cfg["seed"]) == (12, 0, 1.5, 7)
    assert cfg["stop"] == [stop, "\x00never"]                             # escapes decoded
    samples = record["samples"]
    assert [s["prompt"] for s in samples] == PROMPTS
    assert samples[1]["completion"] == text[:text.index(stop)]            # cut before the stop string
    assert samples[1]["new_tokens"] < 12                                  # and decoding stopped there
    first = tok.decode(want[0])
    assert samples[0]["completion"] == (first[:first.index(stop)] if stop in first else first)

    # Sampling: the seed makes it reproducible, top-k 1 is greedy whatever the temperature.
    flags = ["--max-new-tokens", "10", "--temperature", "1.5", "--top-p", "0.9"]
    a = _generate(tmp_path, tmp_path / "ckpt", *flags, "--seed", "1")["samples"]
    assert _generate(tmp_path, tmp_path / "ckpt", *flags, "--seed", "1")["samples"] == a
    greedy = [tok.decode(r) for r in generate_batch(model, ids, 10, temperature=0, pad_id=tok.pad_id,
                                                     eos_id=tok.eos_id)]
    top1 = _generate(tmp_path, tmp_path / "ckpt", "--max-new-tokens", "10", "--temperature", "2", "--top-k", "1")
    assert [s["completion"] for s in top1["samples"]] == greedy
    assert main(["generate", "--checkpoint", str(tmp_path / "ckpt"), "--temperature", "-1",
                 "--set", f"runs_dir={tmp_path}"]) == 2                   # config error names the key


def test_encoder_decoder_checkpoint_generates_targets(ray_session, tok, tmp_path):
    model = _model(tok, arch="encoder_decoder", positions="learned", n_encoder_layers=1)
    save_model(tmp_path / "s2s", model, tok)
    want = generate_seq2seq(model, [tok.encode(p) for p in PROMPTS], 9, bos_id=tok.bos_id, temperature=0,
                            eos_id=tok.eos_id, pad_id=tok.pad_id)
    record = _generate(tmp_path, tmp_path / "s2s", "--max-new-tokens", "9", "--temperature", "0")
    assert [s["completion"] for s in record["samples"]] == [tok.decode(r) for r in want]
    assert [s["new_tokens"] for s in record["samples"]] == [len(r) for r in want]
