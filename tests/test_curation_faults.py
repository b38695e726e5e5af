"""End to end on corrupt inputs and weighted sources, in one small run on the session's Ray:
a truncated .warc.gz, a binary payload labelled text/html, a page above max_html_bytes, invalid
UTF-8 and a malformed line in jsonl, an unreadable parquet file; two jsonl sources mixed 2 : 0.5.
Every input document ends kept, dropped with a reason or errored, good documents in the same
files are kept, and report.md shows examples of dropped documents per reason.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_curation_faults.py -q   (about 30 s on an idle machine)
"""
from __future__ import annotations

import io
import json
import os
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines.curation import CurateConfig, run_curation

PROSE = ("The river flows past the old mill, and the miller says that the water is higher this "
         "year than it has been for a long time. People come from the town to see it. ")


def _page(title: str) -> bytes:
    paras = "".join(f"<p>{title} paragraph {i}. {PROSE}</p>" for i in range(4))
    return f"<html><head><title>{title}</title></head><body><article>{paras}</article></body></html>".encode()


def _warc(records: list[tuple[str, bytes]]) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, body in records:
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                      http_headers=http))
    return buf.getvalue()


def _jsonl(prefix: str, n: int) -> bytes:
    return b"".join(json.dumps({"id": f"{prefix}{i}", "text": f"{prefix} document {i}. {PROSE * 2}"}).encode()
                    + b"\n" for i in range(n))


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    web = _warc([("http://ok.example/1", _page("First")), ("http://bin.example/x", os.urandom(20_000)),
                 ("http://huge.example/y", _page("Huge") * 400), ("http://ok.example/2", _page("Second"))])
    (root / "web.warc.gz").write_bytes(web)
    cut = _warc([("http://cut.example/1", _page("Kept before the cut")), ("http://cut.example/2", _page("Cut"))])
    (root / "cut.warc.gz").write_bytes(cut[:-150])  # inside the second record's gzip member
    (root / "a.jsonl").write_bytes(_jsonl("alpha", 60) + b'{"text": "bad \xff\xfe utf8"}\n{broken json\n')
    (root / "b.jsonl").write_bytes(_jsonl("beta", 60))
    (root / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    cfg = CurateConfig(steps=["normalize", "exact_dedup"], val_fraction=0.1, seed=3, max_html_bytes=200_000,
                       source_weights={"a": 2.0, "b": 0.5})
    inputs = [f"web={root / 'web.warc.gz'}", f"cut={root / 'cut.warc.gz'}", f"a={root / 'a.jsonl'}",
              f"b={root / 'b.jsonl'}", f"bad={root / 'broken.parquet'}"]
    report = run_curation(cfg, inputs, str(root / "out"), progress=lambda s: None)
    return {"report": report, "out": root / "out"}


def _rows(folder):
    return [r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_every_corrupt_input_is_accounted_for(run):
    r = run["report"]
    # 4 web records + the cut file's good record and cut record (one error row for the one damaged
    # record) + 62 lines in a + 60 in b + 1 parquet file
    assert r["input_docs"] == 4 + 2 + 62 + 60 + 1
    assert r["input_docs"] == r["kept_docs"] + r["dropped_docs"] + r["errored_docs"]
    assert r["dropped"]["extract:binary_content"] == 1 and r["dropped"]["extract:html_too_large"] == 1
    errors = r["errors"]
    assert errors["read:UnicodeDecodeError"] == 1 and errors["read:JSONDecodeError"] == 1
    assert errors["read:EOFError"] == 1 and sum(errors.values()) == 4  # + the unreadable parquet
    bad = [row["status"] for row in _rows(run["out"] / "rejected") if row["source"] == "bad"]
    assert len(bad) == 1 and bad[0].startswith("errored:read:")  # the unreadable parquet file
    kept_urls = {row["url"] for row in _rows(run["out"] / "train") + _rows(run["out"] / "val")}
    assert {"http://ok.example/1", "http://ok.example/2", "http://cut.example/1"} <= kept_urls


def test_train_split_follows_source_weights(run):
    r, out = run["report"], run["out"]
    train, val = _rows(out / "train"), _rows(out / "val")
    rows = Counter(row["source"] for row in train)
    docs = {s: len({row["id"] for row in train if row["source"] == s}) for s in ("a", "b")}
    assert rows["a"] == 2 * docs["a"] and rows["b"] == docs["b"]  # every a document twice
    assert rows == Counter(r["train_rows_by_source"]) and docs["a"] == r["train_docs_by_source"]["a"]
    val_b = sum(row["source"] == "b" for row in val)
    assert 15 <= docs["b"] <= 40 and docs["b"] + val_b + r["dropped"]["mix:source_weight"] == 60
    assert r["kept_by_source"]["b"] == docs["b"] + val_b
    assert "| a | 2 |" in (out / "report.md").read_text()  # determinism: test_curation_cleaning.py


def test_report_shows_dropped_examples(run):
    r, md = run["report"], (run["out"] / "report.md").read_text()
    examples = r["dropped_examples"]
    assert set(examples) == set(r["dropped"])
    assert [e["url"] for e in examples["extract:binary_content"]] == ["http://bin.example/x"]
    assert 1 <= len(examples["mix:source_weight"]) <= 3
    assert all("beta document" in e["snippet"] for e in examples["mix:source_weight"])
    assert "## Examples of dropped documents" in md and "### extract:html_too_large" in md
    assert "http://huge.example/y" in md
