"""The demo corpus builder: deterministic, readable by warcio, and carrying its planted cases.

    python -m pytest tests/test_demo_corpus.py -q      (a few seconds, no Ray)
"""
from __future__ import annotations

import hashlib

from warcio.archiveiterator import ArchiveIterator

from pipelines.curation import build_demo_warc


def test_demo_corpus_is_deterministic_and_planted(tmp_path):
    a = build_demo_warc(str(tmp_path / "a" / "demo.warc.gz"), seed=3, n_modules=40)
    b = build_demo_warc(str(tmp_path / "b" / "demo.warc.gz"), seed=3, n_modules=40)
    digest = lambda m: hashlib.sha256(open(m["path"], "rb").read()).hexdigest()  # noqa: E731
    assert digest(a) == digest(b)
    assert a["pages"] >= 40 and a["exact_dups"] >= 1 and a["near_dups"] >= 1
    assert a["pii_pages"] >= 1 and a["low_quality"] >= 4

    types, bodies = {}, {}
    with open(a["path"], "rb") as f:
        for record in ArchiveIterator(f):
            types[record.rec_type] = types.get(record.rec_type, 0) + 1
            if record.rec_type == "response":
                bodies[record.rec_headers.get_header("WARC-Target-URI")] = record.content_stream().read()
    assert types["warcinfo"] == 1 and types["request"] == 3 and types["response"] == a["pages"]
    for url, values in a["planted"]["pii"].items():
        assert all(v.encode() in bodies[url] for v in values)
    for original, copy in a["planted"]["exact_dups"]:
        assert original in bodies and copy in bodies and bodies[original] != bodies[copy]
    assert b"cookie policy" in next(iter(bodies.values()))


def test_full_demo_corpus_size(tmp_path):
    m = build_demo_warc(str(tmp_path / "demo.warc.gz"))
    assert 1_000_000 <= m["text_chars"] <= 4_000_000
    assert m["pages"] > 150
