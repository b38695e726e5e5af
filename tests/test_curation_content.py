"""Content steps: language id (model inside py3langid), word / domain blocklists, 13-gram
benchmark decontamination on the real ARC test set. No Ray.

    python -m pytest tests/test_curation_content.py -q
"""
from __future__ import annotations

import json

import pyarrow as pa

from pipelines.curation import CurateConfig
from pipelines.curation.content_steps import Blocklist, Decontaminate, LangId

EN = "The river rose quickly after three days of steady rain in the hills above the town."
DE = "Der Fluss stieg nach drei Tagen Regen in den Hügeln über der Stadt schnell an."


def _table(texts, urls=None):
    n = len(texts)
    return pa.table({"id": [f"d{i}" for i in range(n)], "url": urls or [""] * n,
                     "status": ["kept"] * n, "text": texts})


def test_langid_labels_and_filters():
    out = LangId(CurateConfig())(_table([EN, DE]))
    assert out["language"].to_pylist() == ["en", "de"] and out["status"].to_pylist() == ["kept"] * 2
    assert min(out["language_score"].to_pylist()) > 0.9
    out = LangId(CurateConfig(languages=["en"]))(_table([EN, DE, "zzzz qqqq"]))
    assert out["status"].to_pylist()[:2] == ["kept", "dropped:langid:language_de"]
    assert out["status"][2].as_py().startswith("dropped:langid:")


def test_blocklist_words_and_domains():
    cfg = CurateConfig(blocklist_words=["frobnicate"], blocklist_domains=["spam.example"])
    out = Blocklist(cfg)(_table([EN, EN + " Frobnicate!", EN, EN, EN + " porn"],
                                ["https://ok.org/a", "https://ok.org/b", "https://www.spam.example/x",
                                 "https://m.xvideos.com/v", "https://ok.org/c"]))
    assert out["status"].to_pylist() == ["kept", "dropped:blocklist:word", "dropped:blocklist:domain",
                                         "dropped:blocklist:domain", "dropped:blocklist:word"]


def test_decontamination_against_real_arc(shared_data, tmp_path):
    arc = shared_data / "benchmarks" / "arc" / "ARC-Challenge-Test.jsonl"
    item = json.loads(arc.read_text().splitlines()[0])
    question = item["question"]["stem"] + " " + " ".join(c["text"] for c in item["question"]["choices"])
    leaked = EN + " " + " ".join(question.split()[:15]) + " and more."
    cfg = CurateConfig(decontaminate_files=[str(arc)])
    step = Decontaminate(cfg)
    out = step(_table([EN, leaked]))
    assert out["status"].to_pylist() == ["kept", "dropped:decontaminate:benchmark_overlap"]
    flagged = Decontaminate(CurateConfig(decontaminate_files=[str(arc)], decontaminate_action="flag"))
    out = flagged(_table([leaked]))
    assert out["status"].to_pylist() == ["kept"] and out["n_contaminated"].to_pylist() == [1]
    assert Decontaminate(CurateConfig())(_table([leaked]))["status"].to_pylist() == ["kept"]
