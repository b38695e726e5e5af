"""The curation stage: raw web data (WARC, WET, jsonl) to deduplicated, filtered train/val parquet.

    from pipelines.curation import CurateConfig, run_curation, build_demo_warc
    build_demo_warc("/tmp/demo.warc.gz")                       # a corpus that needs no network
    report = run_curation(CurateConfig(), ["/tmp/demo.warc.gz"], "/tmp/curated")  # Ray running

Layout: pipeline.py (the chain: parts, dedup, final parts, report), parts.py (an input file or a
piece of one: read + per-document steps + signatures, written with a completion marker),
resume.py (what an output was made from; a changed config is refused), finalize.py (dedup
decisions back onto each part, split, mixing, train/val/rejected per part), store.py (local,
s3://, gs:// for every path), manifest.py (Common Crawl warc.paths.gz), readers.py + formats.py +
warc.py (inputs to rows: WARC/WET with resync after damage, jsonl[.gz|.zst], parquet, text/HTML
files), steps.py (extract, normalize, quality, pii) on cleaning.py / filters.py /
quality_rules.py / fineweb_rules.py (FineWeb's chain as datatrove runs it) / pii.py,
content_steps.py (language id, blocklists, decontamination), dedup.py + components.py +
shuffle.py + phases.py (exact and MinHash dedup, distributed connected components, hash-partitioned
map/reduce on Ray tasks, each phase saved), mixing.py (val split and source weights by id hash),
report.py (counts from the status column, drop examples), demo_corpus.py (the built-in corpus).
Tests: tests/test_curation*.py, tests/test_demo_corpus.py.
"""
import importlib

__all__ = ["CurateConfig", "run_curation", "build_demo_warc"]
_HOMES = {"CurateConfig": "config", "run_curation": "pipeline", "build_demo_warc": "demo_corpus"}


def __getattr__(name: str):
    """Import the public names on first use (PEP 562): `from pipelines.curation import store`, as
    every tokenize and training worker does, then costs store.py, not the whole pipeline."""
    if name in _HOMES:
        return getattr(importlib.import_module(f"pipelines.curation.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'pipelines.curation' has no attribute {name!r}")
