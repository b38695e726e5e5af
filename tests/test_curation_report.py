"""The curation report's pictures: funnel, drop reasons, length before/after, languages, PII (no Ray).

    python -m pytest tests/test_curation_report.py -q

Counts come from `count_table` over rows as the pipeline writes them; `write_report` must write
each picture it has data for as a PNG next to report.md, and report.md must embed it.
"""
from __future__ import annotations

import json

import pyarrow as pa

from pipelines.curation import CurateConfig
from pipelines.curation.figures import length_bin, length_labels
from pipelines.curation.report import build_report, count_table, merge_counts, write_report
from pipelines.curation.steps import Extract

PNG = b"\x89PNG\r\n\x1a\n"
STEPS = ["read", "extract", "quality", "pii"]


def _rows() -> pa.Table:
    """Three kept documents (two English, one German), two dropped by quality, one errored at read."""
    rows = [
        ("a", "kept", "x" * 150, 400, "en", 2, 0), ("b", "kept", "y" * 1500, 1600, "en", 0, 1),
        ("c", "kept", "z" * 90, 120, "de", 0, 0),
        ("d", "dropped:quality:gopher_too_few_words", "short", 60, "en", 0, 0),
        ("e", "dropped:quality:gopher_symbol_ratio", "#" * 300, 300, "en", 0, 0),
        ("f", "errored:read:ValueError: bad record", "", 0, None, 0, 0),
    ]
    cols = ["id", "status", "text", "n_chars_extracted", "language", "n_pii_email", "n_pii_phone"]
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    return table.append_column("url", pa.array([f"http://x/{r[0]}" for r in rows]))


def test_length_bins_are_fixed_and_log_spaced():
    assert [length_bin(n) for n in (0, 99, 100, 499, 500, 1999, 2000, 10**6)] == [0, 0, 1, 2, 3, 4, 5, 10]
    assert length_labels()[0] == "0-100" and length_labels()[-1] == "100k+"


def test_count_table_histograms_extracted_and_kept_lengths():
    sums = count_table(_rows())["sums"]
    # Extracted (before cleaning and filters): every row with extracted text, whatever its fate.
    extracted = {k: v for k, v in sums.items() if k.startswith("len_extracted:")}
    assert extracted == {"len_extracted:2": 2, "len_extracted:1": 1, "len_extracted:4": 1, "len_extracted:0": 1}
    # Kept (after every step): the kept documents' final text.
    kept = {k: v for k, v in sums.items() if k.startswith("len_kept:")}
    assert kept == {"len_kept:1": 1, "len_kept:4": 1, "len_kept:0": 1}


def test_extract_records_the_text_length_before_the_other_steps():
    table = pa.table({"id": ["a", "b"], "url": ["u", "v"], "status": ["kept", "kept"],
                      "html": [b"", b""], "text": ["already plain text", "   "]})
    out = Extract(CurateConfig())(table)
    assert out["n_chars_extracted"].to_pylist() == [len("already plain text"), 0]
    assert out["status"].to_pylist() == ["kept", "dropped:extract:empty"]


def test_write_report_writes_and_embeds_every_picture(tmp_path):
    report = build_report(merge_counts([count_table(_rows())]), STEPS, {})
    assert report["length_bins"]["kept"][1] == 1 and sum(report["length_bins"]["extracted"]) == 5
    write_report(report, str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    written = json.loads((tmp_path / "report.json").read_text())["figures"]
    expected = ["drop_reasons.png", "funnel.png", "languages.png", "lengths.png", "pii.png"]
    assert written == expected
    for name in expected:
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
        assert f"]({name})" in md, name
    assert md.index("(funnel.png)") < md.index("## Drop reasons") < md.index("(drop_reasons.png)")


def test_a_picture_without_data_is_left_out(tmp_path):
    table = _rows().drop_columns(["language", "n_pii_email", "n_pii_phone"])
    report = build_report(merge_counts([count_table(table)]), STEPS, {})
    write_report(report, str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert not (tmp_path / "languages.png").exists() and "languages.png" not in md
    assert not (tmp_path / "pii.png").exists() and "pii.png" not in md
    assert (tmp_path / "funnel.png").read_bytes()[:8] == PNG
