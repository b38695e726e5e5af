"""One generator of document rows per input format; readers.py picks one by file suffix.

Every reader takes (path, source, opts) and yields row dicts made by `row(...)`. Files are opened
through fsspec, so a path may be local or a URL (s3://, gs://, https://); compression follows the
suffix (.gz, .zst). A bad record (a malformed jsonl line, a broken WARC header) yields an error
row and the file goes on; readers.iter_file_rows turns an error that ends the file into one row.

    for r in read_jsonl("corpus.jsonl.zst", "pile", {"text_column": "text"}): ...
"""
from __future__ import annotations

import gzip
import hashlib
import json
from contextlib import contextmanager
from typing import Iterator

KEPT = "kept"
_HTML_TYPES = ("text/html", "application/xhtml+xml")


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
    """WARC / WET: response records are documents, conversion records (WET) are plain text."""
    import fsspec

    with fsspec.open(path, "rb") as f:
        records = _checked_iterator()(f, arc2warc=True)
        yield from _warc_records(records, source)
        if records.truncated:
            raise EOFError("gzip stream ends inside a record: truncated file")


def _checked_iterator():
    """warcio's ArchiveIterator, noting whether the last gzip member ended cleanly. warcio ends
    quietly on a member cut short (the records in it are lost without a word), and it drops its
    decompressor in close(), so the check has to happen there."""
    from warcio.archiveiterator import ArchiveIterator

    class CheckedIterator(ArchiveIterator):
        truncated = False

        def close(self):
            decompressor = getattr(self.reader, "decompressor", None)
            self.truncated = decompressor is not None and not getattr(decompressor, "eof", True)
            super().close()

    return CheckedIterator


def _warc_records(records, source: str) -> Iterator[dict]:
    for record in records:
        record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
        url = (record.rec_headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
        key = doc_id(f"{source}/{record_id or url}")
        try:
            out = _warc_row(record, key, url, source)
            _check_complete(record)
        except Exception as exc:  # noqa: BLE001 - one bad record, not the file
            out = row(key, url, source, errored(exc))
        yield out


def _check_complete(record) -> None:
    """warcio ends a truncated file quietly: a record without its (mandatory) Content-Length or
    shorter than it is an error."""
    if record.length is None:
        raise EOFError("record has no Content-Length: truncated or corrupt file")
    record.raw_stream.read()
    missing = getattr(record.raw_stream, "limit", 0)
    if missing:
        raise EOFError(f"record truncated: {missing} bytes missing (corrupt or cut file)")


def _warc_row(record, key: str, url: str, source: str) -> dict:
    kind = record.rec_type
    if kind == "conversion":
        text = record.content_stream().read().decode("utf-8", "replace")
        return row(key, url, source, KEPT, text=text)
    if kind != "response":
        return row(key, url, source, f"skipped:read:{kind}")
    status = record.http_headers.get_statuscode() if record.http_headers else None
    if status != "200":
        return row(key, url, source, f"dropped:read:http_{status}")
    ctype = (record.http_headers.get_header("Content-Type") or "").lower()
    if ctype and not ctype.startswith(_HTML_TYPES):
        return row(key, url, source, "dropped:read:not_html")
    return row(key, url, source, KEPT, html=record.content_stream().read())


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
    error row (UnicodeDecodeError / JSONDecodeError); the lines around it are read as usual."""
    with open_binary(path) as raw:
        for n, line in enumerate(_byte_lines(raw)):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))  # strict: mojibake is not silently kept
                yield _record_row(obj, source, opts.get("text_column", "text"), str(n))
            except Exception as exc:  # noqa: BLE001 - one bad line, not the file
                yield row(doc_id(f"{source}:{n}"), "", source, errored(exc))


def _byte_lines(f, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a binary stream, undecoded (zstandard's reader has no readline)."""
    rest = b""
    while block := f.read(chunk):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def read_parquet(path: str, source: str, opts: dict) -> Iterator[dict]:
    """Parquet, one row group batch at a time; the text column is configurable (e.g. `content`)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as f:
        n = 0
        for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
            for obj in batch.to_pylist():
                try:
                    yield _record_row(obj, source, opts.get("text_column", "text"), str(n))
                except Exception as exc:  # noqa: BLE001 - one bad row, not the file
                    yield row(doc_id(f"{source}:{n}"), "", source, errored(exc))
                n += 1


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
