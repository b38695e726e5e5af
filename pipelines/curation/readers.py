"""Readers: input files to document rows (id, url, source, status, html, text), never raising.

One reader per format, chosen by file name suffix (`_READERS`); each is a plain generator of row
dicts for one file, so a new format is one function. Unreadable records and files become rows
with status `errored:read:<error>` instead of exceptions: an exception inside a Ray read task
would lose every row of that task (NOTES.md). Records that are not documents (warcinfo, request,
metadata) become `skipped:read:<type>` rows, counted in the report but not as documents.

    ds = read_documents(["data/*.warc.gz"], batch_rows=64)   # a ray.data.Dataset
    rows = list(iter_file_rows("x.warc.gz"))                 # no Ray, for tests
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from typing import Iterator

import pyarrow as pa

SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()),
                    ("status", pa.string()), ("html", pa.binary()), ("text", pa.string())])
KEPT = "kept"
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Paths, globs and folders to a sorted list of files with a known format."""
    files = []
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        for path in matches:
            if os.path.isdir(path):
                files += sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                                if _reader_for(p))
            else:
                files.append(path)
    unknown = [f for f in files if not _reader_for(f)]
    if unknown:
        raise ValueError(f"inputs: unsupported file type {unknown[0]!r}; supported: {sorted(_READERS)}")
    if not files:
        raise ValueError(f"inputs: no files match {inputs}")
    return files


def read_documents(files: list[str], batch_rows: int = 64):
    """A Ray dataset of document rows, one read task per file."""
    import ray

    listing = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    return listing.map_batches(_ReadFiles(batch_rows), batch_size=1, batch_format="pyarrow")


class _ReadFiles:
    """map_batches function: a batch of file paths in, tables of document rows out."""

    def __init__(self, batch_rows: int):
        self.batch_rows = batch_rows

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        rows = []
        for path in batch.column("path").to_pylist():
            for row in iter_file_rows(path):
                rows.append(row)
                if len(rows) >= self.batch_rows:
                    yield pa.Table.from_pylist(rows, schema=SCHEMA)
                    rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)


def iter_file_rows(path: str) -> Iterator[dict]:
    """Every row of one file; an error part-way yields an error row and ends the file."""
    source = os.path.basename(path)
    count = 0
    try:
        for count, row in enumerate(_reader_for(path)(path, source), 1):
            yield row
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not take others down
        yield _row(_doc_id(f"{path}@{count}"), "", source, _errored(exc))


# ---------------------------------------------------------------- formats

def _read_warc(path: str, source: str) -> Iterator[dict]:
    """WARC / WET: response records are documents, conversion records (WET) are plain text."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        records = ArchiveIterator(f, arc2warc=True)
        yield from _warc_records(records, source)
        # A gzip member cut short also ends quietly: the decompressor never saw its end.
        decompressor = getattr(records.reader, "decompressor", None)
        if decompressor is not None and not getattr(decompressor, "eof", True):
            raise EOFError("gzip stream ends inside a record: truncated file")


def _warc_records(records, source: str) -> Iterator[dict]:
    for record in records:
        record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
        url = (record.rec_headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
        doc_id = _doc_id(f"{source}/{record_id or url}")
        try:
            row = _warc_row(record, doc_id, url, source)
            _check_complete(record)
        except Exception as exc:  # noqa: BLE001 - one bad record, not the file
            row = _row(doc_id, url, source, _errored(exc))
        yield row


def _check_complete(record) -> None:
    """warcio ends a truncated file quietly: a record without its (mandatory) Content-Length or
    shorter than it is an error."""
    if record.length is None:
        raise EOFError("record has no Content-Length: truncated or corrupt file")
    record.raw_stream.read()
    missing = getattr(record.raw_stream, "limit", 0)
    if missing:
        raise EOFError(f"record truncated: {missing} bytes missing (corrupt or cut file)")


def _warc_row(record, doc_id: str, url: str, source: str) -> dict:
    kind = record.rec_type
    if kind == "conversion":
        text = record.content_stream().read().decode("utf-8", "replace")
        return _row(doc_id, url, source, KEPT, text=text)
    if kind != "response":
        return _row(doc_id, url, source, f"skipped:read:{kind}")
    status = record.http_headers.get_statuscode() if record.http_headers else None
    if status != "200":
        return _row(doc_id, url, source, f"dropped:read:http_{status}")
    ctype = (record.http_headers.get_header("Content-Type") or "").lower()
    if ctype and not ctype.startswith(_HTML_TYPES):
        return _row(doc_id, url, source, "dropped:read:not_html")
    return _row(doc_id, url, source, KEPT, html=record.content_stream().read())


def _read_jsonl(path: str, source: str) -> Iterator[dict]:
    """JSON lines with a `text` field (also `raw_content`, as CCNet writes); `id`, `url` optional."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            key = f"{source}:{n}"
            try:
                obj = json.loads(line)
                text = obj.get("text", obj.get("raw_content"))
                if not isinstance(text, str):
                    raise ValueError("no text field")
                url = str(obj.get("url") or "")
                doc_key = str(obj.get("id") or f"{url}:{_hash(text)}")
                yield _row(_doc_id(f"{source}/{doc_key}"), url, source, KEPT, text=text)
            except Exception as exc:  # noqa: BLE001 - one bad line, not the file
                yield _row(_doc_id(key), "", source, _errored(exc))


_READERS = {".warc": _read_warc, ".warc.gz": _read_warc, ".wet.gz": _read_warc,
            ".jsonl": _read_jsonl, ".jsonl.gz": _read_jsonl, ".json.gz": _read_jsonl}


def _reader_for(path: str):
    for suffix in sorted(_READERS, key=len, reverse=True):
        if path.endswith(suffix):
            return _READERS[suffix]
    return None


# ---------------------------------------------------------------- rows

def _row(doc_id: str, url: str, source: str, status: str, html: bytes | None = None,
         text: str = "") -> dict:
    return {"id": doc_id, "url": url, "source": source, "status": status, "html": html, "text": text}


def _doc_id(key: str) -> str:
    """A stable 20-hex-digit id from file name + record id (or url + content hash). The file name
    is part of it so that the same record copied into two files is two documents (which exact
    dedup then resolves) rather than one id with two rows."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=10).hexdigest()


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def _errored(exc: BaseException) -> str:
    return f"errored:read:{type(exc).__name__}: {str(exc)[:200]}"
