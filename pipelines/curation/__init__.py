"""The curation stage: raw web data (WARC, WET, jsonl) to deduplicated, filtered train/val parquet.

    from pipelines.curation import CurateConfig, run_curation, build_demo_warc
    build_demo_warc("/tmp/demo.warc.gz")                       # a corpus that needs no network
    report = run_curation(CurateConfig(), ["/tmp/demo.warc.gz"], "/tmp/curated")  # Ray running

Layout: readers.py + formats.py (inputs to rows: WARC/WET, jsonl[.gz|.zst], parquet, text/HTML
files, fsspec URLs), steps.py (extract, normalize, quality, pii) on cleaning.py / filters.py /
quality_rules.py / fineweb_rules.py (FineWeb's chain as datatrove runs it) / pii.py,
content_steps.py (language id, blocklists, decontamination), dedup.py + components.py +
shuffle.py (exact and MinHash dedup, distributed connected components, hash joins on Ray tasks),
mixing.py (val split and source weights by id hash), report.py (counts from the status column,
drop examples), pipeline.py (the chain), demo_corpus.py (the built-in
corpus). Tests: tests/test_curation*.py, tests/test_demo_corpus.py.
"""
from pipelines.curation.config import CurateConfig
from pipelines.curation.demo_corpus import build_demo_warc
from pipelines.curation.pipeline import run_curation

__all__ = ["CurateConfig", "run_curation", "build_demo_warc"]
