"""End to end: run_curation on a small demo corpus plus a truncated WARC, on the session's Ray.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_curation_pipeline.py -q   (about a minute)
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipelines.curation import CurateConfig, build_demo_warc, run_curation


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    manifest = build_demo_warc(str(root / "demo.warc.gz"), seed=1, n_modules=40)
    good = (root / "demo.warc.gz").read_bytes()
    (root / "cut.warc.gz").write_bytes(good[: len(good) // 2])  # gzip per record, cut mid-file
    inputs = [str(root / "demo.warc.gz"), str(root / "cut.warc.gz")]
    cfg = CurateConfig(val_fraction=0.2, seed=7)
    lines = []
    report = run_curation(cfg, inputs, str(root / "out"), progress=lines.append)
    return {"root": root, "manifest": manifest, "report": report, "cfg": cfg, "inputs": inputs,
            "progress": lines}


def _rows(folder):
    rows = []
    for path in sorted(folder.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_accounting_invariant_and_report_files(curated):
    r, out = curated["report"], curated["root"] / "out"
    assert r["input_docs"] == r["kept_docs"] + r["dropped_docs"] + r["errored_docs"]
    assert r["kept_docs"] == r["train_docs"] + r["val_docs"]
    assert [s["step"] for s in r["steps"]][:2] == ["read", "extract"]
    for before, after in zip(r["steps"], r["steps"][1:]):
        assert after["in"] == before["kept"]
        assert before["in"] == before["kept"] + before["dropped"] + before["errored"]
    assert json.loads((out / "report.json").read_text())["kept_docs"] == r["kept_docs"]
    assert "| quality |" in (out / "report.md").read_text()
    assert r["records_skipped"]["request"] >= 3 and r["records_skipped"]["warcinfo"] >= 1
    assert len(curated["progress"]) >= 4
    assert sum(r["kept_by_source"].values()) == r["kept_docs"] == sum(r["kept_by_language"].values())
    assert max(r["kept_by_language"], key=r["kept_by_language"].get) == "en"


def test_truncated_file_is_errored_and_good_records_survive(curated):
    r = curated["report"]
    assert r["errored_docs"] >= 1 and any(k.startswith("read:EOFError") for k in r["errors"])
    assert any("truncated" in e["status"] for e in r["error_examples"])
    # The cut copy's records duplicate the good file's, so exact dedup removes them, not the originals.
    assert r["dropped"]["exact_dedup:duplicate"] >= curated["manifest"]["exact_dups"]


def test_planted_duplicates_junk_and_pii(curated):
    out, planted = curated["root"] / "out", curated["manifest"]["planted"]
    kept = _rows(out / "train") + _rows(out / "val")
    rejected = {}  # url -> statuses; the cut copy repeats urls of the good file
    for row in _rows(out / "rejected"):
        rejected[row["url"]] = rejected.get(row["url"], "") + row["status"] + " "
    kept_urls = [row["url"] for row in kept]
    assert len(kept_urls) == len(set(kept_urls))
    tested = {}
    for kind, step in (("exact_dups", "exact_dedup"), ("near_dups", "minhash_dedup")):
        pairs = [(a, b) for a, b in planted[kind]  # a pair failing a quality rule is no dedup case
                 if not all(rejected.get(x, "").startswith("dropped:quality:") for x in (a, b))]
        tested[kind] = len(pairs)
        assert pairs, kind
        for original, copy in pairs:
            assert (original in kept_urls) + (copy in kept_urls) == 1, (original, copy)
            # A near pair may lose both members to the cut file's exact copies first.
            assert "_dedup:" in rejected.get(original, "") + rejected.get(copy, "")
            if kind == "exact_dups":
                assert f"dropped:{step}:" in rejected.get(original, "") + rejected.get(copy, "")
    for url in planted["low_quality"]:
        assert rejected[url].startswith(("dropped:quality:", "dropped:extract:", "dropped:normalize:c4")), rejected[url]
    assert curated["report"]["dropped"]["minhash_dedup:near_duplicate"] >= tested["near_dups"]
    text = "\n".join(row["text"] for row in kept)
    for values in planted["pii"].values():
        assert not any(v in text for v in values)
    assert "<EMAIL>" in text and "<PHONE>" in text and "<IP_ADDRESS>" in text
    pii = curated["report"]["pii_replacements"]
    assert pii["email"] >= 1 and pii["phone"] >= 1 and pii["ipv4"] >= 1
    assert set(kept[0]) >= {"id", "text", "url", "source"}


def test_split_is_deterministic_and_disjoint(curated, tmp_path):
    out = curated["root"] / "out"
    train, val = {r["id"] for r in _rows(out / "train")}, {r["id"] for r in _rows(out / "val")}
    assert train and val and not train & val
    again = run_curation(curated["cfg"], curated["inputs"], str(tmp_path / "again"), progress=lambda s: None)
    assert {r["id"] for r in _rows(tmp_path / "again" / "train")} == train
    assert {r["id"] for r in _rows(tmp_path / "again" / "val")} == val
    assert again["dropped"] == curated["report"]["dropped"]


def test_report_counts_every_part_and_pieces_cover_each_record_once(curated):
    """Two files in 16 parts (8 pieces each); the per-part counts add up to the report's."""
    r = curated["report"]
    assert r["parts_total"] == len(r["parts"]) == 16 and r["parts_skipped"] == 0
    assert {p["file"] for p in r["parts"]} == set(curated["inputs"])
    assert {p["piece"] for p in r["parts"]} == {f"{k}/8" for k in range(1, 9)}
    skipped = sum(r["records_skipped"].values())
    assert sum(p["records"] for p in r["parts"]) == r["input_docs"] + skipped
    assert sum(p.get("train", 0) for p in r["parts"]) == sum(r["train_rows_by_source"].values())
    assert sum(p.get("val", 0) for p in r["parts"]) == r["val_docs"]
    dedup = r["dropped"].get("exact_dedup:duplicate", 0) + r["dropped"].get("minhash_dedup:near_duplicate", 0)
    assert sum(p["kept_before_dedup"] for p in r["parts"]) == r["kept_docs"] + dedup


def test_part_pieces_partition_a_file(tmp_path):
    """Each record of a file lands in exactly one piece, whatever the number of pieces."""
    from pipelines.curation.parts import _batches, plan_parts

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(37)))
    assert [p.pieces for p in plan_parts([str(path)] * 20)] == [1] * 20
    parts = plan_parts([str(path)])
    assert len(parts) == 16 and [p.index for p in parts] == list(range(16))
    ids = [i for p in parts for t in _batches(p, CurateConfig(batch_size=4)) for i in t["id"].to_pylist()]
    assert sorted(ids) == sorted(f"d{i}" for i in range(37))


@pytest.mark.parametrize("damage", [False, True])
def test_warc_byte_range_pieces_read_each_record_once(tmp_path, damage):
    """A gzip-per-record WARC cut into 16 byte ranges: every record (and, with a damaged member
    in the middle, its one error row) is read by exactly one piece, none read twice."""
    from pipelines.curation.parts import _batches, plan_parts
    from pipelines.curation.readers import iter_file_rows

    path = tmp_path / "demo.warc.gz"
    build_demo_warc(str(path), seed=5, n_modules=8)
    if damage:
        data = bytearray(path.read_bytes())
        middle = data.find(b"\x1f\x8b\x08", len(data) // 2)
        data[middle + 200:middle + 260] = b"\x00" * 60   # inside that member's deflate data
        path.write_bytes(bytes(data))
    whole = [(r["id"], r["status"].split(":")[0]) for r in iter_file_rows(str(path))]
    parts = plan_parts([str(path)])
    assert len(parts) == 16 and parts[0].start == 0 and parts[-1].end is None
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    pieces = [(i, s.split(":")[0]) for p in parts for t in _batches(p, CurateConfig())
              for i, s in zip(t["id"].to_pylist(), t["status"].to_pylist())]
    assert sorted(pieces) == sorted(whole) and len(whole) >= 20
    assert sum(s == "errored" for _, s in whole) == (1 if damage else 0)
