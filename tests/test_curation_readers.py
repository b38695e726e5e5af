"""Readers: jsonl / jsonl.gz / jsonl.zst, parquet, folders of text / markdown / HTML, fsspec URLs
and globs, named sources, real WET and Dolma files, and the extraction time limit. No Ray.

    python -m pytest tests/test_curation_readers.py -q
Real-data tests skip without ../shared/data.
"""
from __future__ import annotations

import gzip
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.curation import CurateConfig
from pipelines.curation.readers import SCHEMA, expand_inputs, iter_file_rows
from pipelines.curation.steps import Extract, time_limit

PILE = [{"text": "first document", "meta": {"pile_set_name": "Wikipedia"}},
        {"id": "doc-7", "text": "second document", "meta": {"pile_set_name": "ArXiv"}}]


def _jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records) + b"{broken\n"


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_pile_jsonl_compressions_keep_id_and_meta(tmp_path, suffix):
    import zstandard

    data = _jsonl(PILE)
    data = {".jsonl": data, ".jsonl.gz": gzip.compress(data),
            ".jsonl.zst": zstandard.ZstdCompressor().compress(data)}[suffix]
    path = tmp_path / f"pile{suffix}"
    path.write_bytes(data)
    rows = list(iter_file_rows(str(path)))
    assert [r["status"].split(":")[0] for r in rows] == ["kept", "kept", "errored"]
    assert rows[1]["id"] == "doc-7" and rows[0]["id"] != rows[1]["id"]
    assert [r["text"] for r in rows[:2]] == ["first document", "second document"]
    assert json.loads(rows[1]["meta"]) == {"pile_set_name": "ArXiv"}


def test_parquet_with_content_column(tmp_path):
    path = tmp_path / "code.parquet"
    pq.write_table(pa.table({"content": ["def f():\n    return 1\n", None], "repo": ["a/b", "c/d"],
                             "id": ["f1", "f2"]}), path)
    rows = list(iter_file_rows(str(path), {"text_column": "content"}))
    assert rows[0]["status"] == "kept" and rows[0]["id"] == "f1" and "return 1" in rows[0]["text"]
    assert json.loads(rows[0]["meta"]) == {"repo": "a/b"}
    assert rows[1]["status"].startswith("errored:read:ValueError")
    assert pa.Table.from_pylist(rows, schema=SCHEMA).num_rows == 2


def test_folder_of_private_documents_and_named_source(tmp_path):
    docs = tmp_path / "private"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("plain text")
    (docs / "sub" / "b.md").write_text("# Title\n\nmarkdown body")
    (docs / "c.html").write_bytes(b"<html><body><p>page</p></body></html>")
    (docs / "skip.bin").write_bytes(b"\x00\x01")
    files = expand_inputs([f"notes={docs}"])
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.txt", "c.html", "b.md"]
    rows = [r for f in files for r in iter_file_rows(f)]
    assert {r["source"] for r in rows} == {"notes"}
    assert rows[1]["html"].startswith(b"<html>") and rows[2]["text"].startswith("# Title")


def test_fsspec_url_with_glob(tmp_path):
    (tmp_path / "x1.jsonl").write_bytes(_jsonl(PILE[:1]))
    (tmp_path / "x2.jsonl").write_bytes(_jsonl(PILE[1:]))
    files = expand_inputs([f"file://{tmp_path}/x*.jsonl"])
    assert files == [f"file://{tmp_path}/x1.jsonl", f"file://{tmp_path}/x2.jsonl"]
    assert [r["text"] for r in iter_file_rows(files[1]) if r["status"] == "kept"] == ["second document"]


def test_real_wet_conversion_record(shared_data):
    rows = list(iter_file_rows(str(shared_data / "warc" / "cc-main-2024-22-whirlwind.warc.wet.gz")))
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == 1 and kept[0]["url"].startswith("http") and len(kept[0]["text"]) > 200
    assert kept[0]["html"] is None


def test_real_dolma_jsonl_keeps_ids(shared_data):
    rows = list(iter_file_rows(str(shared_data / "jsonl" / "dolma-docs-000.json.gz")))
    assert len(rows) == 10 and all(r["status"] == "kept" for r in rows)
    assert rows[0]["id"].startswith("http") and rows[0]["meta"]


def test_time_limit_turns_a_hung_page_into_an_error_row(monkeypatch):
    import trafilatura

    with pytest.raises(TimeoutError):
        with time_limit(0.2):
            time.sleep(2)
    monkeypatch.setattr(trafilatura, "extract", lambda *a, **k: time.sleep(5))
    table = pa.table({"id": ["p"], "status": ["kept"], "html": [b"<html></html>"], "text": [""]})
    t0 = time.time()
    out = Extract(CurateConfig(extract_timeout_s=0.3))(table)
    assert out["status"][0].as_py().startswith("errored:extract:TimeoutError") and time.time() - t0 < 3
