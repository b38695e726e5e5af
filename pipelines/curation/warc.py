"""WARC / WET / ARC files to document rows, reading past damage: every intact record is read once,
each damaged record is one error row.

    for r in read_warc("CC-MAIN-...warc.gz", "cc", {}): ...   # or readers.iter_file_rows(path)

A file is read as segments: each gzip member of a compressed file (Common Crawl writes one member
per record; `gzip file.warc` writes one member holding every record), or the whole of an
uncompressed file. warcio parses the records inside a segment. When something is damaged:
- a gzip member that does not decompress (bad deflate data, CRC mismatch) ends its segment: the
  record in it is one error row and reading resumes at the next gzip member header (`\\x1f\\x8b\\x08`)
  after the damaged member's start whose data starts like a record (a chance `\\x1f\\x8b\\x08`
  inside compressed data is skipped);
- a file cut short keeps every record before the cut; the cut record is one error row (EOFError);
- a record whose header does not parse, that is shorter than its Content-Length or that is not
  followed by the next record (a wrong Content-Length) is one error row, and reading resumes at
  the next line starting `WARC/1.` (in an uncompressed file searched again from just after the
  damaged record's start, so that a too-long Content-Length loses no record).
warcio has no resync (at a damaged member it stops, or prints the zlib error and goes on with
empty data), so the member and line scanning are written here; warcio parses every record.
Memory stays at about one record plus 16 KiB buffers: the file is streamed, never read whole.
Ids: a record's id comes from source + WARC-Record-ID (as before); a record whose header is
unreadable gets source + byte offset of its gzip member (+ offset inside the member), so reruns
give the same ids.
"""
from __future__ import annotations

import gzip
import zlib
from typing import Iterator

from warcio.bufferedreaders import BufferedReader
from warcio.recordloader import ArcWarcRecordLoader

from pipelines.curation.formats import KEPT, doc_id, errored, row

_CHUNK = 16384                  # raw read size (warcio's BUFF_SIZE)
_MAX_LINE = 1 << 16             # a status line longer than this is not one
_PROBE = 4096                   # compressed bytes tried at a candidate member start
_MAGIC = b"\x1f\x8b\x08"        # gzip member header: ID1 ID2 CM=deflate
_WARC_LINES = tuple(v.encode() for v in ArcWarcRecordLoader.WARC_TYPES)   # WARC/1.1, WARC/1.0, ...
_RECORD_STARTS = _WARC_LINES + (b"filedesc://", b"http://", b"https://", b"dns:", b"ftp://")  # + ARC
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def read_warc(path: str, source: str, opts: dict) -> Iterator[dict]:
    """WARC / WET: response records are documents, conversion records (WET) are plain text;
    gzip per record, gzip of the whole file and uncompressed alike (told by the first bytes).

    opts["byte_range"] = (start, end): only the gzip members that start in [start, end), so that
    pieces of one large file are read by separate tasks without reading it all (as Hadoop splits
    a file): the first piece starts at byte 0, the others at the first good member at or after
    their start. A file that is not gzip per record cannot be split: the piece starting at 0
    reads it whole and the others read nothing."""
    import fsspec

    start, end = opts.get("byte_range") or (0, None)
    loader = ArcWarcRecordLoader(verify_http=False, arc2warc=True)
    with fsspec.open(path, "rb") as raw:
        gzipped = raw.read(2) == _MAGIC[:2]
        raw.seek(0)
        if gzipped:
            pos, head = (0, raw.read(_CHUNK)) if start == 0 else _next_member(raw, start)
            yield from _gzip_rows(raw, loader, source, pos, head, end)
        elif start == 0:
            yield from _segment_rows(_Plain(raw), loader, source)


# ---------------------------------------------------------------- segments

class _Plain:
    """An uncompressed file as one segment (the raw stream under warcio's line reader)."""
    start, failed = 0, None

    def __init__(self, raw):
        self.raw, self.pos = raw, 0
        self.reader = BufferedReader(self)

    def read(self, n: int = _CHUNK) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        """Offset of the next unread byte."""
        return self.pos - self.reader.rem_length()

    def rewind(self, offset: int) -> bool:
        self.raw.seek(offset)
        self.pos, self.reader = offset, BufferedReader(self)
        return True


class _Member:
    """One gzip member starting at byte `start` of `raw` (`head`: its first bytes, already read):
    its decompressed bytes, read on demand. A damaged or cut member sets `failed` and raises it
    from then on (BadGzipFile, or EOFError for a cut); `rest` is what was read past its end."""

    def __init__(self, raw, start: int, head: bytes):
        self.raw, self.start, self.pending = raw, start, head
        self.fed, self.out, self.failed, self.rest = 0, 0, None, b""
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.reader = BufferedReader(self)

    def read(self, n: int = _CHUNK) -> bytes:
        while not self.z.eof:
            if self.failed:
                raise self.failed
            data, self.pending = self.pending or self.raw.read(_CHUNK), b""
            if not data:
                self._fail(EOFError(f"gzip member at byte {self.start} cut short: truncated file"))
            self.fed += len(data)
            try:
                out = self.z.decompress(data)
            except zlib.error as exc:
                self._fail(gzip.BadGzipFile(f"gzip member at byte {self.start} is damaged: {exc}"))
            if out:
                self.out += len(out)
                return out
        self.rest = self.z.unused_data
        return b""

    def _fail(self, exc: Exception):
        self.failed = exc
        raise exc

    def tell(self) -> int:
        return self.out - self.reader.rem_length()

    def rewind(self, offset: int) -> bool:
        return False  # deflate data cannot be re-entered: resync goes on forward

    def next_start(self) -> int:
        return self.start + self.fed - len(self.rest)


def _gzip_rows(raw, loader, source: str, pos: int, head: bytes, end: int | None) -> Iterator[dict]:
    """Rows of a gzip file from the member at `pos` (`head`: its first bytes), member by member,
    up to the first member starting at or after `end`; after a damaged member, on at the next
    good one."""
    while head and (end is None or pos < end):
        member = _Member(raw, pos, head)
        yield from _segment_rows(member, loader, source)
        if member.failed is None:
            pos, head = member.next_start(), member.rest or raw.read(_CHUNK)
        elif isinstance(member.failed, EOFError):
            return  # the file ends inside this member: nothing follows
        else:
            pos, head = _next_member(raw, member.start + 1)


def _next_member(raw, pos: int) -> tuple[int, bytes]:
    """Offset and first bytes of the next gzip member at or after byte `pos` whose data starts
    like a record; (end of file, b"") when there is none."""
    raw.seek(pos)
    buf = raw.read(_CHUNK)
    while True:
        i = buf.find(_MAGIC)
        if i < 0:
            more, keep = raw.read(_CHUNK), buf[-2:]
            if not more:
                return pos + len(buf), b""
            pos, buf = pos + len(buf) - len(keep), keep + more
            continue
        while len(buf) - i < _PROBE and (more := raw.read(_CHUNK)):
            buf += more
        if _starts_record(buf[i:i + _PROBE]):
            return pos + i, buf[i:]
        pos, buf = pos + i + 1, buf[i + 1:]


def _starts_record(compressed: bytes) -> bool:
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed, 64)
    except zlib.error:
        return False
    return head.lstrip().startswith(_RECORD_STARTS)


# ---------------------------------------------------------------- records

def _segment_rows(seg, loader, source: str) -> Iterator[dict]:
    """Rows of the records in one segment. A damaged record is one error row; reading resumes at
    the next record start, or, when the segment's own bytes failed (gzip), the segment ends."""
    line, start = None, 0
    while True:
        try:
            if line is None:
                line = _next_line(seg.reader)
            if not line:
                return
            start = seg.tell() - len(line)
            out, line = _record_row(seg, loader, line, source)
        except Exception as exc:  # noqa: BLE001 - an unreadable record header, not the file
            out, line = row(doc_id(f"{source}@{seg.start}+{start}"), "", source, errored(seg.failed or exc)), None
        yield out
        if line is None:
            if seg.failed:
                return
            line = _resync(seg, start)


def _record_row(seg, loader, line: bytes, source: str) -> tuple[dict, bytes | None]:
    """The row of the record whose status line `line` was just read, and the next record's status
    line (b"" at the end; None when this record is damaged and the caller must resync)."""
    record = loader.parse_record_stream(seg.reader, line)
    record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
    url = (record.rec_headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
    key = doc_id(f"{source}/{record_id or url}")
    try:
        out = _warc_row(record, key, url, source)
    except Exception as exc:  # noqa: BLE001 - bad content (an HTTP header, say); checked below
        out = row(key, url, source, errored(exc))
    try:
        _check_complete(record)
        gap, after = _gap_and_line(seg.reader)
        if after and line.startswith(_WARC_LINES) and not after.startswith(_WARC_LINES) and gap != b"\r\n\r\n":
            # where the Content-Length says this record ends there is neither the CRLF CRLF that
            # ends a WARC record nor a next record: the length is wrong (after a CRLF CRLF, the
            # next record is the broken one, and parsing it fails)
            raise ValueError(f"record not followed by a record (wrong Content-Length?): {after[:40]!r}")
        return out, after
    except Exception as exc:  # noqa: BLE001 - this record is damaged
        return row(key, url, source, errored(seg.failed or exc)), None


def _next_line(reader) -> bytes:
    """The next line that is not blank (records are separated by blank lines); b"" at the end."""
    return _gap_and_line(reader)[1]


def _gap_and_line(reader) -> tuple[bytes, bytes]:
    """The blank lines before the next line that is not blank (their first 8 bytes), and that line."""
    gap = b""
    while True:
        line = reader.readline(_MAX_LINE)
        if not line or line.strip():
            return gap, line
        gap = (gap + line)[:8]


def _resync(seg, start: int) -> bytes:
    """The status line of the next WARC record after a damaged one that began at `start`, b"" if
    none: an uncompressed file is searched again from just after `start`, a gzip member forward
    from where reading stopped (a failure of the member itself ends the search)."""
    at_line_start = not seg.rewind(start + 1)
    try:
        while line := seg.reader.readline(_MAX_LINE):
            if at_line_start and line.startswith(_WARC_LINES):
                return line
            at_line_start = line.endswith(b"\n")
    except Exception:  # noqa: BLE001 - the member's bytes failed: the caller moves on
        if not seg.failed:
            raise
    return b""


def _check_complete(record) -> None:
    """A record without its (mandatory) Content-Length or shorter than it is damaged (warcio
    reads a short record quietly)."""
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
