"""Tests for MT-Bench-style multi-turn chat evaluation (pipelines/evaluation/chat.py).

    python -m pytest tests/test_evaluation_chat.py -q

A tiny random model answers; judges are a plain function, a stub OpenAI-compatible server on
localhost (no network beyond this machine) and a LocalJudge.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from modeling.config import ModelConfig
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer
from pipelines.evaluation.chat import (USER, LocalJudge, OpenAIJudge, parse_rating, read_questions, render,
                                       run_chat)
from pipelines.evaluation.lm import BespokeLM

QUESTIONS = [{"question_id": 1, "category": "writing", "turns": ["Write a haiku.", "Now make it rhyme."]},
             {"question_id": 2, "category": "math", "turns": ["What is 2 + 2?"]}]


@pytest.fixture(scope="module")
def lm() -> BespokeLM:
    tok = Tokenizer.train(["User Assistant question answer haiku rhyme math " * 20] * 10, vocab_size=300)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, max_seq_len=128))
    return BespokeLM(model.eval(), tok)


def test_transcripts_without_a_judge(lm, tmp_path):
    out = tmp_path / "chat.jsonl"
    records = run_chat(lm, QUESTIONS, out, max_gen_toks=6)
    assert [json.loads(line) for line in out.read_text().splitlines()] == records
    assert [len(r["answers"]) for r in records] == [2, 1] and all(r["judgements"] is None for r in records)
    assert all(USER.strip() not in a for r in records for a in r["answers"])


def test_second_turn_sees_the_first():
    text = render([("Write a haiku.", "Leaves fall")], "Now make it rhyme.")
    assert text == f"{USER}Write a haiku.\n\n### Assistant:\nLeaves fall\n\n{USER}Now make it rhyme.\n\n### Assistant:\n"


def test_a_judge_grades_every_turn_with_its_history(lm, tmp_path):
    seen = []

    def judge(question, answer, history):
        seen.append((question, len(history)))
        return {"score": 7.0, "explanation": "fine"}

    records = run_chat(lm, QUESTIONS, tmp_path / "c.jsonl", judge=judge, max_gen_toks=4)
    assert seen == [("Write a haiku.", 0), ("Now make it rhyme.", 1), ("What is 2 + 2?", 0)]
    assert [j["score"] for r in records for j in r["judgements"]] == [7.0, 7.0, 7.0]
    local = LocalJudge(lm, max_gen_toks=4)("Q?", "A.", [])
    assert set(local) == {"score", "explanation"}                  # a random model rarely rates: None


def test_openai_compatible_judge_against_a_local_stub(monkeypatch):
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            requests.append((self.path, self.headers.get("Authorization"),
                             json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps({"choices": [{"message": {"content": "Helpful. Rating: [[8]]"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("JUDGE_KEY", "secret")
    try:
        got = OpenAIJudge(f"http://127.0.0.1:{server.server_port}/v1", "judge-model", api_key_env="JUDGE_KEY")(
            "What is 2 + 2?", "4", [])
    finally:
        server.shutdown()
    assert got["score"] == 8.0
    path, auth, body = requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["model"] == "judge-model"
    assert "[Question]\nWhat is 2 + 2?" in body["messages"][0]["content"]


def test_ratings_and_question_files(tmp_path):
    assert parse_rating("ok [[3]] then Rating: [[9.5]]") == 9.5 and parse_rating("no rating") is None
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps({"question_id": 3, "turns": []}) + "\n")
    with pytest.raises(ValueError, match="question 3"):
        read_questions(path)
