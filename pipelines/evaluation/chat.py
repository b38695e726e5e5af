"""MT-Bench-style multi-turn chat evaluation: transcripts, scored by a pluggable judge (or not).

    questions = read_questions("question.jsonl")        # {"question_id", "category", "turns": [...]}
    records = run_chat(lm, questions, "eval/chat.jsonl", judge=None)      # transcripts only
    records = run_chat(lm, questions, "eval/chat.jsonl",
                       judge=OpenAIJudge("http://localhost:8000/v1", "my-judge-model"))

The model answers each turn with the whole conversation so far in its context (a plain
`### User:` / `### Assistant:` template; generation stops at the next `### User:`). A judge is any
callable `judge(question, answer, history) -> {"score": float | None, "explanation": str}`; given
one, each answer is graded with MT-Bench's single-answer prompt (`Rating: [[5]]`, 1-10). Built in:
OpenAIJudge (any OpenAI-compatible /chat/completions endpoint the user configures) and
LocalJudge (another lm-eval-style model with generate_until). Without a judge only transcripts
are saved, one JSON line per question.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Callable

from lm_eval.api.instance import Instance

USER, ASSISTANT = "### User:\n", "### Assistant:\n"
JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as "
    "the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. "
    "Begin your evaluation by providing a short explanation. Be as objective as possible. After "
    "providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
    "following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n"
    "{history}[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]")
Judge = Callable[[str, str, list], dict]


def read_questions(path: str | Path) -> list[dict]:
    """MT-Bench question.jsonl: one {"question_id", "category", "turns": [str, ...]} per line."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for row in rows:
        if not row.get("turns") or not all(isinstance(t, str) for t in row["turns"]):
            raise ValueError(f"{path}: question {row.get('question_id')!r} needs a non-empty list of turns")
    return rows


def render(history: list[tuple[str, str]], question: str) -> str:
    """The conversation so far plus the new user turn, ending where the assistant speaks."""
    past = "".join(f"{USER}{q}\n\n{ASSISTANT}{a}\n\n" for q, a in history)
    return f"{past}{USER}{question}\n\n{ASSISTANT}"


def answer_turns(lm, turns: list[str], max_gen_toks: int) -> list[str]:
    history: list[tuple[str, str]] = []
    for question in turns:
        gen = {"until": [USER.strip()], "max_gen_toks": max_gen_toks, "do_sample": False}
        req = Instance(request_type="generate_until", doc={}, arguments=(render(history, question), gen), idx=0)
        history.append((question, lm.generate_until([req], disable_tqdm=True)[0].strip()))
    return [a for _, a in history]


def run_chat(lm, questions: list[dict], out_path: str | Path, judge: Judge | None = None,
             max_gen_toks: int = 128, model_name: str = "bespoke") -> list[dict]:
    """Answer every question's turns in order; grade with `judge` if given; write jsonl transcripts."""
    records = []
    for q in questions:
        answers = answer_turns(lm, q["turns"], max_gen_toks)
        rec = {"question_id": q.get("question_id"), "category": q.get("category"), "model": model_name,
               "turns": q["turns"], "answers": answers, "judgements": None}
        if judge is not None:
            rec["judgements"] = [judge(t, a, list(zip(q["turns"][:i], answers[:i])))
                                 for i, (t, a) in enumerate(zip(q["turns"], answers))]
        records.append(rec)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


def judge_prompt(question: str, answer: str, history: list) -> str:
    past = "".join(f"[Earlier question]\n{q}\n[Earlier answer]\n{a}\n\n" for q, a in history)
    return JUDGE_PROMPT.format(history=past, question=question, answer=answer)


def parse_rating(text: str) -> float | None:
    """The last `[[x]]` rating in a judge's reply, or None when it gave none."""
    found = re.findall(r"\[\[(\d+(?:\.\d+)?)\]\]", text)
    return float(found[-1]) if found else None


class OpenAIJudge:
    """Grades with an OpenAI-compatible endpoint: POST {base_url}/chat/completions."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout_s = model, api_key_env, timeout_s

    def __call__(self, question: str, answer: str, history: list) -> dict:
        body = {"model": self.model, "temperature": 0.0,
                "messages": [{"role": "user", "content": judge_prompt(question, answer, history)}]}
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            text = json.loads(resp.read())["choices"][0]["message"]["content"]
        return {"score": parse_rating(text), "explanation": text}


class LocalJudge:
    """Grades with a local model (anything with lm-eval's generate_until, e.g. BespokeLM)."""

    def __init__(self, lm, max_gen_toks: int = 256):
        self.lm, self.max_gen_toks = lm, max_gen_toks

    def __call__(self, question: str, answer: str, history: list) -> dict:
        prompt = render([], judge_prompt(question, answer, history))
        gen = {"until": [USER.strip()], "max_gen_toks": self.max_gen_toks, "do_sample": False}
        text = self.lm.generate_until([Instance("generate_until", {}, (prompt, gen), 0)], disable_tqdm=True)[0]
        return {"score": parse_rating(text), "explanation": text}
