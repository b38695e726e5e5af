"""Resuming curation on the session's Ray: a run that stopped part way (parts, dedup phases or
final parts unfinished) is finished by the same call, with the same output as an uninterrupted
run; a changed config or input list is refused naming the difference; restart starts over.

The stop is made by removing what a killed run would not have written (markers and the files
after them); tests/test_curation_cluster.py kills real drivers and nodes.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_curation_resume.py -q   (about a minute)
"""
from __future__ import annotations

import json
import shutil

import pytest

from pipelines.config import ConfigError
from pipelines.curation import CurateConfig, build_demo_warc, run_curation

CFG = dict(val_fraction=0.2, seed=7)


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory, curated_outputs):
    root = tmp_path_factory.mktemp("resume")
    build_demo_warc(str(root / "demo.warc.gz"), seed=2, n_modules=16)
    inputs = [str(root / "demo.warc.gz")]
    report = run_curation(CurateConfig(**CFG), inputs, str(root / "ref"), progress=lambda s: None)
    assert report["kept_docs"] > 5 and report["dropped"].get("exact_dedup:duplicate", 0) >= 1
    return {"root": root, "inputs": inputs, "out": curated_outputs(root / "ref"), "report": report,
            "outputs": curated_outputs}


def _copy(reference, name):
    dest = reference["root"] / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(reference["root"] / "ref", dest)
    return dest


def _rerun(reference, out, **kw):
    lines = []
    report = run_curation(CurateConfig(**{**CFG, **kw}), reference["inputs"], str(out), progress=lines.append)
    return report, lines


def test_unfinished_parts_are_redone_and_only_they(reference):
    """As after a kill in the per-document phase: 5 of 16 parts have no marker (one has a
    half-written attempt file), and nothing after the phase exists."""
    out = _copy(reference, "killed_parts")
    markers = sorted((out / "parts").glob("*.done.json"))
    assert len(markers) == 16
    for marker in markers[3:8]:
        marker.unlink()
    kept = {m.name: json.loads(m.read_text())["data"] for m in markers[8:]}
    (out / "parts" / "part-00004.deadbeef.parquet").write_bytes(b"PAR1 half written")
    for sub in ("dedup", "final", "train", "val", "rejected"):
        shutil.rmtree(out / sub)
    report, lines = _rerun(reference, out)
    assert report["parts_skipped"] == 11 and report["final_parts_skipped"] == 0
    assert any("5 part(s) to do, 11 already done" in line for line in lines)
    assert reference["outputs"](out) == reference["out"]
    # The finished parts were not redone (same attempt files), and the stale attempt is gone.
    assert {m: json.loads((out / "parts" / m).read_text())["data"] for m in kept} == kept
    assert not (out / "parts" / "part-00004.deadbeef.parquet").exists()
    assert report["input_docs"] == report["kept_docs"] + report["dropped_docs"] + report["errored_docs"]


def test_rerun_resumes_inside_dedup_and_in_the_final_parts(reference):
    """As after a kill during connected components and one after 6 final parts."""
    out = _copy(reference, "killed_dedup")
    for name in ("labels.done.json", "by_part.done.json"):
        (out / "dedup" / name).unlink()
    shutil.rmtree(out / "dedup" / "by_part")
    for sub in ("final", "train", "val", "rejected"):
        shutil.rmtree(out / sub)
    report, lines = _rerun(reference, out)
    assert report["parts_skipped"] == 16
    assert any("dedup: components finished in an earlier run" in line for line in lines)
    assert not any("dedup: labels finished" in line for line in lines)
    assert reference["outputs"](out) == reference["out"]

    finals = sorted((out / "final").glob("*.done.json"))
    for marker in finals[6:]:
        marker.unlink()
    report, lines = _rerun(reference, out)
    assert report["final_parts_skipped"] == 6 and any("dedup finished in an earlier run" in line for line in lines)
    assert reference["outputs"](out) == reference["out"]


def test_changed_config_or_inputs_are_refused_and_restart_starts_over(reference, tmp_path):
    out = _copy(reference, "changed")
    with pytest.raises(ConfigError, match=r"curate.min_words is 60 in this run but was 50.*--restart"):
        _rerun(reference, out, min_words=60)
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({"id": "x1", "text": "one more document " * 20}) + "\n")
    with pytest.raises(ConfigError, match=r"inputs: 2 file\(s\) in this run, 1 before .*more.jsonl"):
        run_curation(CurateConfig(**CFG), reference["inputs"] + [str(extra)], str(out), progress=lambda s: None)
    assert reference["outputs"](out) == reference["out"]   # a refused run changes nothing

    report = run_curation(CurateConfig(**CFG, min_words=60), reference["inputs"], str(out),
                          progress=lambda s: None, restart=True)
    assert report["parts_skipped"] == 0
    fresh = run_curation(CurateConfig(**CFG, min_words=60), reference["inputs"], str(tmp_path / "fresh"),
                         progress=lambda s: None)
    assert reference["outputs"](out) == reference["outputs"](tmp_path / "fresh")
    assert fresh["kept_docs"] <= reference["report"]["kept_docs"]
