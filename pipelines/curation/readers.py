"""Readers: inputs to document rows (id, url, source, status, html, text, meta), never raising.

Inputs are paths, folders, globs or fsspec URLs (s3://bucket/crawl/*.warc.gz), optionally named
`name=path` to set the source name (default: the file name). The format follows the file suffix
(formats.READERS: WARC/WET, jsonl[.gz|.zst], parquet, .txt/.md/.html files). Unreadable records
and files become rows with status `errored:read:<error>` instead of exceptions: an exception
inside a Ray read task would lose every row of that task (NOTES.md). Records that are not
documents (warcinfo, request, metadata) become `skipped:read:<type>` rows, counted in the report
but not as documents.

    ds = read_documents(["web=data/*.warc.gz", "code.parquet"], batch_rows=64, text_column="content")
    rows = list(iter_file_rows("x.warc.gz"))                 # no Ray, for tests
"""
from __future__ import annotations

import functools
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

__all__ = ["KEPT", "SCHEMA", "expand_inputs", "read_documents", "iter_file_rows", "source_of"]


def split_name(item: str) -> tuple[str | None, str]:
    """`web=crawl/*.warc.gz` -> ("web", "crawl/*.warc.gz"); a plain path -> (None, path)."""
    m = _NAMED.match(item)
    return (m.group(1), m.group(2)) if m and "://" not in m.group(1) else (None, item)


def source_of(item: str) -> str:
    """The source name of an input file: its `name=` prefix, else the file name."""
    name, path = split_name(item)
    return name or os.path.basename(path.rstrip("/"))


def expand_inputs(inputs: list[str]) -> list[str]:
    """Paths, globs, folders and URLs to a sorted list of files with a known format (a name
    given as `name=` stays in front of each of its files)."""
    files = []
    for item in inputs:
        name, pattern = split_name(item)
        prefix = f"{name}=" if name else ""
        files += [prefix + f for f in _expand(pattern)]
    unknown = [f for f in files if not _reader_for(split_name(f)[1])]
    if unknown:
        raise ValueError(f"inputs: unsupported file type {unknown[0]!r}; supported: {sorted(READERS)}")
    if not files:
        raise ValueError(f"inputs: no files match {inputs}")
    return files


def _expand(pattern: str) -> list[str]:
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


def read_documents(files: list[str], batch_rows: int = 64, text_column: str = "text"):
    """A Ray dataset of document rows, one read task (and one block) per file.

    A datasource, not map_batches over a list of paths: Ray Data fuses that map with the next
    map_batches(batch_size=64) and bundles 64 paths into one task, so up to 64 files were read
    (and every later step ran) as one serial block that grew with the corpus."""
    import ray

    source = _file_source()(files, batch_rows, {"text_column": text_column})
    return ray.data.read_datasource(source, override_num_blocks=len(files))


@functools.cache
def _file_source() -> type:
    """The Datasource class, built on first use so that importing readers does not import Ray Data."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class FileSource(Datasource):
        """One ReadTask per file; each yields tables of `batch_rows` document rows (`_read_file`)."""

        def __init__(self, files: list[str], batch_rows: int, opts: dict):
            self.files, self.batch_rows, self.opts = files, batch_rows, opts

        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
            return [ReadTask(functools.partial(_read_file, f, self.batch_rows, self.opts),
                             BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=(f,)),
                             schema=SCHEMA) for f in self.files]

    return FileSource


def _read_file(path: str, batch_rows: int, opts: dict) -> Iterator[pa.Table]:
    """Tables of up to batch_rows rows of one file."""
    rows = []
    for r in iter_file_rows(path, opts):
        rows.append(r)
        if len(rows) >= batch_rows:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=SCHEMA)


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
