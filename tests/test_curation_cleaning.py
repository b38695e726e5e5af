"""Cleaning options (markup, control characters, emoji, punctuation, boilerplate lines), mixing by
source weight, binary payload detection and strict UTF-8 in jsonl. No Ray; about a second.

    python -m pytest tests/test_curation_cleaning.py -q
"""
from __future__ import annotations

import os
from collections import Counter

import pyarrow as pa
import pytest

from pipelines.curation import CurateConfig
from pipelines.curation.cleaning import (clean_markup, is_boilerplate, normalize_punctuation,
                                         remove_boilerplate_lines, remove_control_chars, remove_emoji)
from pipelines.curation.mixing import MIX_DROPPED, AssignSplit, copies_of, repeat_rows
from pipelines.curation.readers import iter_file_rows
from pipelines.curation.steps import Extract, Normalize, is_binary


# ---------------------------------------------------------------- cleaning functions

def test_markup_tags_comments_and_entities():
    assert clean_markup('a <b>bold</b> &amp; <br/>x<div class="n">y</div>') == "a bold & xy"
    assert clean_markup("keep<!-- a\ncomment --> &#39;q&#x27; &eacute;") == "keep 'q' é"
    # Not markup: comparisons, generics, an ampersand in a name, an entity without its semicolon
    # ("a<b and c>d" would be taken for a <b> tag: markup cleaning is off by default).
    for text in ("3 < 4 and 5 > 2", "if x<y and z>w", "List<String> x", "R&D at AT&T", "I'm &notit"):
        assert clean_markup(text) == text


def test_control_characters():
    assert remove_control_chars("a\x00b\x07c\u200bd\ufeffe\u00adf\x85g") == "abcdefg"
    assert remove_control_chars("tab\tnew\nline\u200c") == "tab\tnew\nline\u200c"  # ZWNJ is text


def test_emoji_and_pictographs():
    assert remove_emoji("great 👍🏽 job") == "great  job"
    assert remove_emoji("family 👨‍👩‍👧 keycap 1️⃣ heart ❤️ star ★ icon \uf099.") == "family  keycap 1 heart  star  icon ."
    kept = "© 2024, 20 °C, café, ∑ x², naïve, 日本語, Ελληνικά"
    assert remove_emoji(kept) == kept


def test_punctuation_map():
    assert normalize_punctuation("“quoted” ‘single’ – dash… full，stop。") == \
        "\"quoted\" 'single' - dash... full,stop."


@pytest.mark.parametrize("line, boiler", [
    ("All rights reserved.", True), ("Copyright 2024 Example Media Inc", True),
    ("Subscribe to our newsletter", True), ("12 likes", True), ("1.2k shares", True),
    ("Home | About | Contact", True), ("Skip to main content", True), ("Leave a reply", True),
    ("The library lets readers subscribe to journals, and members who sign up early get a discount "
     "on the yearly fee for every printed volume.", False),
    ("The committee met on Tuesday.", False), ("", False)])
def test_boilerplate_lines(line, boiler):
    assert is_boilerplate(line) is boiler


def test_normalize_step_switches():
    text = "<p>Intro 😀 – dash</p>\x07\nA real sentence stays here.\nAll rights reserved."
    table = pa.table({"id": ["d"], "status": ["kept"], "text": [text]})

    def run(**switches):
        return Normalize(CurateConfig(c4_lines=False, **switches))(table)["text"][0].as_py()

    assert run() == "<p>Intro 😀 – dash</p>\nA real sentence stays here.\nAll rights reserved."
    assert run(clean_markup=True, clean_emoji=True, normalize_punctuation=True,
               clean_boilerplate_lines=True) == "Intro - dash\nA real sentence stays here."
    assert "\x07" in run(clean_control_chars=False)


# ---------------------------------------------------------------- mixing

def test_copies_follow_the_weight_deterministically():
    ids = [f"doc-{i}" for i in range(4000)]
    assert all(copies_of(i, 2.0, 0) == 2 for i in ids) and all(copies_of(i, 0.0, 0) == 0 for i in ids)
    for weight in (0.5, 1.5, 0.1):
        n = sum(copies_of(i, weight, 0) for i in ids)
        assert abs(n / len(ids) - weight) < 0.03, (weight, n)
        assert [copies_of(i, weight, 0) for i in ids] == [copies_of(i, weight, 0) for i in ids]
    assert [copies_of(i, 0.5, 0) for i in ids] != [copies_of(i, 0.5, 1) for i in ids]  # the seed matters


def test_assign_split_weights_train_only():
    n = 2000
    table = pa.table({"id": [f"d{i}" for i in range(n)], "source": ["a", "b"] * (n // 2),
                      "status": ["kept"] * (n - 1) + ["dropped:quality:x"]})
    plain = AssignSplit(3, 0.1)(table)
    mixed = AssignSplit(3, 0.1, {"a": 2.0, "b": 0.5})(table)
    assert mixed["split"].to_pylist().count("val") == plain["split"].to_pylist().count("val")
    val = [r for r in mixed.to_pylist() if r["split"] == "val"]
    assert {r["source"] for r in val} == {"a", "b"} and all(r["copies"] == 1 for r in val)
    rows = Counter(r["source"] for r in repeat_rows(mixed.filter(pa.compute.equal(mixed["split"], "train")))
                   .to_pylist())
    plain_train = Counter(r["source"] for r in plain.to_pylist() if r["split"] == "train")
    assert rows["a"] == 2 * plain_train["a"] and abs(rows["b"] / plain_train["b"] - 0.5) < 0.06
    statuses = Counter(mixed["status"].to_pylist())
    assert statuses[MIX_DROPPED] == plain_train["b"] - rows["b"] and statuses["dropped:quality:x"] == 1


def test_source_weights_validation():
    with pytest.raises(ValueError, match="^source_weights: "):
        CurateConfig(source_weights={"web": -1.0})


# ---------------------------------------------------------------- corrupt records

def test_binary_payload_is_dropped_not_extracted():
    assert is_binary(b"\x89PNG\r\n\x1a\n" + os.urandom(3000)) and is_binary(os.urandom(4096))
    for text in ("<p>café</p>".encode("latin-1"), "<p>日本語</p>".encode("gbk") * 300, b"<html>x</html>"):
        assert not is_binary(text)
    table = pa.table({"id": ["p"], "status": ["kept"], "html": [os.urandom(5000)], "text": [""]})
    assert Extract(CurateConfig())(table)["status"][0].as_py() == "dropped:extract:binary_content"


def test_jsonl_invalid_utf8_line_is_an_error_row(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "good one"}\n{"text": "bad \xff\xfe byte"}\n{"text": "good two"}\n')
    rows = list(iter_file_rows(str(path)))
    assert [r["status"].split(":")[0] for r in rows] == ["kept", "errored", "kept"]
    assert rows[1]["status"].startswith("errored:read:UnicodeDecodeError")
