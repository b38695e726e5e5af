"""One generator of document rows per input format; readers.py picks one by file suffix.

Every reader takes (path, source, opts) and yields row dicts made by `row(...)`. Files are opened
through fsspec, so a path may be local or a URL (s3://, gs://, https://); compression follows the
suffix (.gz, .zst). A damaged record is one error row (`errored:read:<ExceptionType>: msg`) and
the reader goes on with the next good one: a malformed jsonl line, a parquet row group that does
not decode (one error row per row in it), a damaged WARC record or gzip member (warc.py). A file
cut short keeps what precedes the cut plus one error row. readers.iter_file_rows turns an error
that still ends a file (an unreadable parquet footer, say) into one row.

    for r in read_jsonl("corpus.jsonl.zst", "pile", {"text_column": "text"}): ...
"""
from __future__ import annotations

import gzip
import hashlib
import json
from contextlib import contextmanager
from typing import Iterator

KEPT = "kept"


def row(doc_id: str, url: str, source: str, status: str, html: bytes | None = None,
        text: str = "", meta: str = "") -> dict:
    return {"id": doc_id, "url": url, "source": source, "status": status, "html": html,
            "text": text, "meta": meta}


def doc_id(key: str) -> str:
    """A stable 20-hex-digit id from file name + record id (or url + content hash). The file name
    is part of it so that the same record copied into two files is two documents (which exact
    dedup then resolves) rather than one id with two rows."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=10).hexdigest()


def errored(exc: BaseException) -> str:
    return f"errored:read:{type(exc).__name__}: {str(exc)[:200]}"


@contextmanager
def open_binary(path: str):
    """fsspec file, decompressed by suffix: .gz (gzip), .zst (zstandard), else as is."""
    import fsspec

    with fsspec.open(path, "rb") as raw:
        if path.endswith(".gz"):
            yield gzip.GzipFile(fileobj=raw)
        elif path.endswith(".zst"):
            import zstandard

            yield zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            yield raw


# ---------------------------------------------------------------- WARC / WET

def read_warc(path: str, source: str, opts: dict) -> Iterator[dict]:
    """WARC / WET / ARC, gzipped per record, as a whole or not at all; damaged records are error
    rows and reading goes on after them (warc.py)."""
    from pipelines.curation.warc import read_warc as read  # warc.py imports row() etc. from here

    return read(path, source, opts)


# ---------------------------------------------------------------- jsonl, parquet

def _record_row(obj: dict, source: str, text_column: str, fallback_key: str) -> dict:
    """A dict record (jsonl line, parquet row) to a row: its `id` is kept; `meta` (Pile) or the
    other scalar fields become the JSON meta column (Dolma's `metadata` too)."""
    text = obj.get(text_column, obj.get("raw_content") if text_column == "text" else None)
    if not isinstance(text, str):
        raise ValueError(f"no {text_column!r} field")
    url = str(obj.get("url") or "")
    given = obj.get("id")
    key = str(given) if given not in (None, "") else doc_id(f"{source}/{url}:{fallback_key}:{_hash(text)}")
    meta = obj.get("meta", obj.get("metadata"))  # Pile: meta, Dolma: metadata
    if meta is None:
        meta = {k: v for k, v in obj.items() if k not in (text_column, "id", "url")
                and isinstance(v, (str, int, float, bool))}
    return row(key, url, source, KEPT, text=text, meta=json.dumps(meta, sort_keys=True, default=str))


def read_jsonl(path: str, source: str, opts: dict) -> Iterator[dict]:
    """JSON lines (.jsonl, .json.gz, .jsonl.zst, ...): text column configurable (CCNet's
    `raw_content` is the fallback for `text`). A line that is not valid UTF-8 or not JSON is an
    error row (UnicodeDecodeError / JSONDecodeError); the lines around it are read as usual. A
    compressed stream cut short or damaged keeps every line before the damage, then one error row
    for the line it was in."""
    column, n = opts.get("text_column", "text"), -1
    with open_binary(path) as raw:
        try:
            for n, line in enumerate(_byte_lines(raw)):
                if line.strip():
                    yield _jsonl_row(line, source, column, n)
        except Exception as exc:  # noqa: BLE001 - the stream, not a line, failed: nothing follows
            yield row(doc_id(f"{source}:{n + 1}"), "", source, errored(exc))


def _jsonl_row(line: bytes, source: str, column: str, n: int) -> dict:
    try:
        obj = json.loads(line.decode("utf-8"))  # strict: mojibake is not silently kept
        return _record_row(obj, source, column, str(n))
    except Exception as exc:  # noqa: BLE001 - one bad line, not the file
        return row(doc_id(f"{source}:{n}"), "", source, errored(exc))


def _byte_lines(f, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a binary stream, undecoded (zstandard's reader has no readline). read1 where there
    is one: GzipFile.read loses the data of a call that meets the cut of a truncated file."""
    read, rest = getattr(f, "read1", f.read), b""
    while block := read(chunk):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def read_parquet(path: str, source: str, opts: dict) -> Iterator[dict]:
    """Parquet, row group by row group; the text column is configurable (e.g. `content`). A row
    group that does not decode is one error row per row in it (ids `source:group:index`) and the
    next row group is read; an unreadable footer ends the file (readers makes that one row)."""
    import fsspec
    import pyarrow.parquet as pq

    column, n = opts.get("text_column", "text"), 0
    with fsspec.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            size = pf.metadata.row_group(g).num_rows
            try:
                table = pf.read_row_group(g)
            except Exception as exc:  # noqa: BLE001 - one damaged row group, not the file
                yield from (row(doc_id(f"{source}:{g}:{i}"), "", source, errored(exc)) for i in range(size))
                n += size
                continue
            for batch in table.to_batches(max_chunksize=256):
                for obj in batch.to_pylist():
                    yield _parquet_row(obj, source, column, n)
                    n += 1


def _parquet_row(obj: dict, source: str, column: str, n: int) -> dict:
    try:
        return _record_row(obj, source, column, str(n))
    except Exception as exc:  # noqa: BLE001 - one bad row, not the file
        return row(doc_id(f"{source}:{n}"), "", source, errored(exc))


# ---------------------------------------------------------------- plain files

def read_text_file(path: str, source: str, opts: dict) -> Iterator[dict]:
    """A .txt / .md file is one document; invalid UTF-8 is replaced, not fatal."""
    with open_binary(path) as f:
        text = f.read().decode("utf-8", "replace")
    yield row(doc_id(f"{source}/{path}"), path, source, KEPT, text=text)


def read_html_file(path: str, source: str, opts: dict) -> Iterator[dict]:
    """A .html / .htm file is one page for the extract step."""
    with open_binary(path) as f:
        html = f.read()
    yield row(doc_id(f"{source}/{path}"), path, source, KEPT, html=html)


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


READERS = {".warc": read_warc, ".warc.gz": read_warc, ".wet.gz": read_warc, ".wet": read_warc,
           **{f".{ext}{z}": read_jsonl for ext in ("jsonl", "ndjson") for z in (".gz", ".zst", "")},
           ".json.gz": read_jsonl, ".json.zst": read_jsonl,  # Dolma / Pile shards are jsonl
           ".parquet": read_parquet, ".txt": read_text_file, ".md": read_text_file,
           ".txt.gz": read_text_file, ".html": read_html_file, ".htm": read_html_file,
           ".html.gz": read_html_file}
