"""Readers: inputs to document rows (id, url, source, status, html, text, meta), never raising.

Inputs are paths, folders, globs or fsspec URLs (s3://bucket/crawl/*.warc.gz), optionally named
`name=path` to set the source name (default: the file name). The format follows the file suffix
(formats.READERS: WARC/WET, jsonl[.gz|.zst], parquet, .txt/.md/.html files). Unreadable records
and files become rows with status `errored:read:<error>` instead of exceptions: an exception
inside a Ray task would lose every row of that task (NOTES.md). Records that are not
documents (warcinfo, request, metadata) become `skipped:read:<type>` rows, counted in the report
but not as documents.

    files = expand_inputs(["web=data/*.warc.gz", "code.parquet"])   # ["web=data/a.warc.gz", ...]
    rows = list(iter_file_rows("web=data/a.warc.gz", {"text_column": "content"}))
"""
from __future__ import annotations

import glob
import os
import re
from typing import Iterator

import pyarrow as pa

from pipelines.curation.formats import KEPT, READERS, doc_id, errored, row

SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()),
                    ("status", pa.string()), ("html", pa.binary()), ("text", pa.string()),
                    ("meta", pa.string())])
_NAMED = re.compile(r"^([A-Za-z_][\w.-]*)=(.+)$")
_MANIFEST_SUFFIXES = (".paths.gz", ".paths")  # Common Crawl's warc.paths.gz, wet.paths.gz

__all__ = ["KEPT", "SCHEMA", "expand_inputs", "iter_file_rows", "source_of"]


def split_name(item: str) -> tuple[str | None, str]:
    """`web=crawl/*.warc.gz` -> ("web", "crawl/*.warc.gz"); a plain path -> (None, path)."""
    m = _NAMED.match(item)
    return (m.group(1), m.group(2)) if m and "://" not in m.group(1) else (None, item)


def source_of(item: str) -> str:
    """The source name of an input file: its `name=` prefix, else the file name."""
    name, path = split_name(item)
    return name or os.path.basename(path.rstrip("/"))


def expand_inputs(inputs: list[str], cfg=None) -> list[str]:
    """Paths, globs, folders, URLs and Common Crawl manifests (`warc.paths.gz`, manifest.py) to a
    sorted list of files with a known format (a name given as `name=` stays in front of each of
    its files). With a CurateConfig, `max_input_files` and the seeded `input_sample` choose a
    subset for trial runs."""
    files = []
    base_url = getattr(cfg, "input_base_url", "") if cfg is not None else ""
    for item in inputs:
        name, pattern = split_name(item)
        prefix = f"{name}=" if name else ""
        files += [prefix + f for f in _expand(pattern, base_url)]
    unknown = [f for f in files if not _reader_for(split_name(f)[1])]
    if unknown:
        raise ValueError(f"inputs: unsupported file type {unknown[0]!r}; supported: {sorted(READERS)}")
    if not files:
        raise ValueError(f"inputs: no files match {inputs}")
    if cfg is not None and (cfg.max_input_files or cfg.input_sample < 1):
        from pipelines.curation.manifest import choose_files

        files = choose_files(files, cfg.max_input_files, cfg.input_sample, cfg.seed)
        if not files:
            raise ValueError(f"inputs: curate.input_sample={cfg.input_sample} chose none of the input files")
    return files


def _expand(pattern: str, base_url: str = "") -> list[str]:
    if pattern.lower().endswith(_MANIFEST_SUFFIXES):
        from pipelines.curation.manifest import expand_manifest

        return expand_manifest(pattern, base_url)
    if "://" in pattern:
        return _expand_url(pattern)
    matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
    out = []
    for path in matches:
        if os.path.isdir(path):
            out += sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                          if _reader_for(p))
        else:
            out.append(path)
    return out


def _expand_url(url: str) -> list[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    paths = fs.glob(path) if glob.has_magic(path) else [path]
    out = []
    for p in sorted(paths):
        found = [f for f in fs.find(p) if _reader_for(f)] if fs.isdir(p) else [p]
        out += [fs.unstrip_protocol(f) for f in sorted(found)]
    return out


def iter_file_rows(item: str, opts: dict | None = None) -> Iterator[dict]:
    """Every row of one file (`path` or `name=path`); an error part-way yields an error row and
    ends the file."""
    path, source = split_name(item)[1], source_of(item)
    count = 0
    try:
        for count, r in enumerate(_reader_for(path)(path, source, opts or {}), 1):
            yield r
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not take others down
        yield row(doc_id(f"{path}@{count}"), "", source, errored(exc))


def _reader_for(path: str):
    for suffix in sorted(READERS, key=len, reverse=True):
        if path.lower().endswith(suffix):
            return READERS[suffix]
    return None
