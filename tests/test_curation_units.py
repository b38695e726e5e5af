"""Unit tests of the curation building blocks, no Ray: config, filters, dedup, readers (PII: test_curation_pii.py).

    python -m pytest tests/test_curation_units.py -q
Real-data tests (labelled near-duplicates, real WARCs) skip without ../shared/data.
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import pyarrow as pa
import pytest

from pipelines.curation import CurateConfig
from pipelines.curation.dedup import _bucket_keys, exact_key, labels_from_edges, minhash_signature, signature_table
from pipelines.curation.filters import normalize_text, quality_reason
from pipelines.curation.readers import expand_inputs, iter_file_rows
from pipelines.curation.steps import Quality, Step

CFG = CurateConfig()
PROSE = ("The function returns the number of items in the container and raises an error when the "
         "argument is not a sequence. It is safe to call it with any object that has a length, and "
         "the result is always an integer that is greater than or equal to zero. ") * 3


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, field", [
    ({"val_fraction": 0.7}, "val_fraction"), ({"steps": ["bogus"]}, "steps"),
    ({"num_perm": 100}, "num_perm"), ({"pii_types": ["passport"]}, "pii_types"),
    ({"min_words": -1}, "min_words"), ({"batch_size": 0}, "batch_size"),
    ({"min_alpha_word_fraction": 1.5}, "min_alpha_word_fraction"),
    ({"minhash_threshold": -0.1}, "minhash_threshold")])
def test_config_errors_start_with_field_name(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        CurateConfig(**kwargs)


def test_config_defaults():
    assert (CFG.bands, CFG.rows, CFG.num_perm, CFG.ngram_size) == (14, 8, 112, 5)
    assert 0 < CFG.val_fraction < 0.5


# ---------------------------------------------------------------- normalisation and filters

def test_normalize_fixes_mojibake_nfc_and_whitespace():
    assert normalize_text("caf\u00c3\u00a9  \t ok \n\n\n\n  next ") == "café ok\n\nnext"
    assert normalize_text("e\u0301") == "\u00e9"


def test_prose_passes_every_filter():
    assert quality_reason(PROSE, CFG) is None


@pytest.mark.parametrize("text, reason", [
    ("too short to keep", "gopher_too_few_words"),
    (" ".join(["a b c"] * 40), "gopher_short_words"),
    (" ".join(["incomprehensibilities"] * 60), "gopher_long_words"),
    (PROSE + " #tag" * 40, "gopher_symbol_ratio"),
    ("\n".join(f"{PROSE[:60]} {i}..." for i in range(10)), "gopher_ellipsis_lines"),
    ("\n".join(f"- returning elements {i} from the container and object" for i in range(30)),
     "gopher_bullet_lines"),
    (PROSE + " 12 34 56 78 90" * 30, "gopher_few_alpha_words"),
    (" ".join(["cheap python hosting free download"] * 30), "gopher_few_stop_words"),
    ("\n".join(["the same line of text is here and there"] * 10), "gopher_duplicate_lines"),
])
def test_each_gopher_rule(text, reason):
    assert quality_reason(text, CFG) == reason


def test_step_marks_only_kept_rows_and_catches_errors():
    class Boom(Step):
        name = "boom"

        def process(self, row):
            if "explode" in row["text"]:
                raise RuntimeError("bad doc")
            return "short" if len(row["text"]) < 5 else None

    table = pa.table({"id": ["a", "b", "c", "d"], "status": ["kept", "kept", "kept", "dropped:x:y"],
                      "text": ["hi", "explode now", "long enough", "hi"]})
    out = Boom(CFG)(table)["status"].to_pylist()
    assert out == ["dropped:boom:short", "errored:boom:RuntimeError: bad doc", "kept", "dropped:x:y"]
    assert Quality(CFG)(table).num_rows == 4


# ---------------------------------------------------------------- dedup

def test_exact_key_ignores_case_and_spacing():
    assert exact_key("Hello  World\n") == exact_key("hello world")


def test_minhash_near_copy_is_similar():
    a = minhash_signature(PROSE * 3, CFG)
    b = minhash_signature((PROSE * 3).replace("safe", "fine", 1), CFG)
    assert (a == b).mean() > 0.8


def test_labels_keep_smallest_id_per_component():
    labels = labels_from_edges([("b", "c", "exact"), ("a", "d", "near"), ("c", "d", "near"),
                                ("x", "y", "near")])
    assert labels == {"c": "dropped:exact_dedup:duplicate", "d": "dropped:minhash_dedup:near_duplicate",
                      "b": "dropped:minhash_dedup:near_duplicate", "y": "dropped:minhash_dedup:near_duplicate"}


def test_minhash_finds_labelled_near_duplicates(shared_data):
    """articles_1000: measured recall 10/10 and precision 10/10 of candidate pairs (14x8 bands)."""
    ids, texts = [], []
    for line in (shared_data / "dedup" / "articles_1000.train").read_text().splitlines():
        doc_id, text = line.split(" ", 1)
        ids.append(doc_id)
        texts.append(text)
    truth = {tuple(sorted(l.split())) for l in (shared_data / "dedup" / "articles_1000.truth")
             .read_text().splitlines() if l.strip()}
    cfg = CurateConfig(steps=["minhash_dedup"])
    keys = _bucket_keys(cfg, signature_table(pa.table({"id": ids, "status": ["kept"] * len(ids), "text": texts}), cfg))
    buckets = defaultdict(set)
    for key, doc_id in zip(keys["key"].to_pylist(), keys["id"].to_pylist()):
        buckets[key].add(doc_id)
    pairs = {tuple(sorted(p)) for b in buckets.values() for p in itertools.combinations(b, 2)}
    recall, precision = len(pairs & truth) / len(truth), len(pairs & truth) / max(1, len(pairs))
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)


# ---------------------------------------------------------------- readers

@pytest.mark.parametrize("name, responses", [("cc-main-2020-34-sample.warc.gz", 16),
                                             ("wget-crawl-2024-sample.warc.gz", 22)])
def test_real_warcs_read_without_error(shared_data, name, responses):
    rows = list(iter_file_rows(str(shared_data / "warc" / name)))
    assert not [r for r in rows if r["status"].startswith("errored")]
    docs = [r for r in rows if not r["status"].startswith("skipped")]
    assert sum(r["status"] == "kept" for r in docs) == responses
    assert any(r["status"].startswith("skipped:read:") for r in rows)  # request/warcinfo/metadata
    assert all(r["url"].startswith("http") and not r["url"].startswith("<") for r in docs)
    assert len({r["id"] for r in rows}) == len(rows)


def test_truncated_warc_yields_good_records_then_an_error_row(tmp_path, shared_data):
    data = (shared_data / "warc" / "wget-crawl-2024-sample.warc.gz").read_bytes()  # gzip per record
    bad = tmp_path / "truncated.warc.gz"
    bad.write_bytes(data[: len(data) * 6 // 10])
    rows = list(iter_file_rows(str(bad)))
    assert rows[-1]["status"].startswith("errored:read:")
    assert sum(r["status"] == "kept" for r in rows) >= 3


def test_jsonl_reader_and_inputs(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "hello world", "url": "u"}\nnot json\n{"raw_content": "x"}\n')
    rows = list(iter_file_rows(str(path)))
    assert [r["status"].split(":")[0] for r in rows] == ["kept", "errored", "kept"]
    assert expand_inputs([str(tmp_path / "*.jsonl")]) == [str(path)]
    with pytest.raises(ValueError, match="^inputs: "):
        expand_inputs([str(tmp_path / "*.warc.gz")])


def test_curate_steps_flag_selects_steps():
    from pipelines.cli import _load, _parser

    args = _parser().parse_args(["curate", "--steps", "pii,dedup"])
    assert _load(args).curate.steps == ["pii", "exact_dedup", "minhash_dedup"]
    assert CurateConfig(steps=["dedup"]).enabled("minhash_dedup")
