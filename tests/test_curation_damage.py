"""Damaged inputs lose only their damaged records: WARC gzip members with bad deflate data, a WARC
gzipped as one stream, an uncompressed WARC with a broken record, files cut short, damaged copies
of the real Common Crawl sample, a broken jsonl line and a cut .jsonl.gz, a parquet file with a
corrupt row group. Each errored row stands for one damaged record, every good record is read
exactly once, and ids are the same on every read. No Ray.

    python -m pytest tests/test_curation_damage.py -q        (a few seconds)
Real-data tests skip without ../shared/data.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import random
import re
import zlib
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.curation.formats import doc_id
from pipelines.curation.readers import iter_file_rows

N = 9
URLS = [f"http://news.example/2024/story-{i}" for i in range(N)]
WORDS = ("river mill water town people market bridge winter harvest school station garden library "
         "museum council road forest village festival weather summer doctor teacher bakery harbour "
         "ferry storm election budget hospital football orchestra theatre mayor farmer price street "
         "church castle island mountain valley railway factory union strike student university").split()


def _page(i: int) -> bytes:
    """A news-like page, different for every i (so each gzip member holds a few KB of deflate data)."""
    rng = random.Random(i)
    paras = "".join("<p>" + " ".join(rng.choice(WORDS) + rng.choice(["", "s", ",", "."]) for _ in range(70))
                    + f" {rng.randint(1, 10**6)}.</p>" for _ in range(10))
    return (f"<html><head><title>Story {i}</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>Story {i}</h1>{paras}</article></body></html>").encode()


def _warc(n: int = N) -> bytes:
    """n response records, one gzip member each (as Common Crawl writes them)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i in range(n):
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(URLS[i], "response", payload=io.BytesIO(_page(i)),
                                                      http_headers=http))
    return buf.getvalue()


def _members(data: bytes) -> list[bytes]:
    """The gzip members of a file, in order."""
    out = []
    while data:
        z = zlib.decompressobj(31)
        z.decompress(data)
        out.append(data[:len(data) - len(z.unused_data)])
        data = z.unused_data
    return out


def _damaged(member: bytes) -> bytes:
    """The member with 32 bytes in the middle of its deflate data overwritten."""
    bad = bytearray(member)
    mid = len(bad) // 2
    bad[mid:mid + 32] = bytes(range(97, 129))
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(bad), 31)
    return bytes(bad)


@pytest.fixture(scope="module")
def web():
    data = _warc()
    members = _members(data)
    assert len(members) == N and all(len(m) > 1500 for m in members)
    plain = [zlib.decompress(m, 31) for m in members]
    return {"data": data, "members": members, "plain": plain}


def _read(path, data: bytes) -> list[dict]:
    path.write_bytes(data)
    rows = list(iter_file_rows(str(path)))
    assert [r["id"] for r in rows] == [r["id"] for r in iter_file_rows(str(path))]  # stable on reruns
    assert len({r["id"] for r in rows}) == len(rows)
    return rows


def _kept(rows) -> list[str]:
    return [r["url"] for r in rows if r["status"] == "kept"]


def _errors(rows) -> list[str]:
    assert all(r["status"] == "kept" or r["status"].startswith("errored:read:") for r in rows)
    return [r["status"] for r in rows if r["status"].startswith("errored:read:")]


# ---------------------------------------------------------------- WARC, gzip per record

@pytest.mark.parametrize("bad", [[4], [2, 6], [0], [N - 1], [3, 4]])
def test_damaged_members_lose_only_their_records(tmp_path, web, bad):
    members = [_damaged(m) if i in bad else m for i, m in enumerate(web["members"])]
    rows = _read(tmp_path / "web.warc.gz", b"".join(members))
    assert _kept(rows) == [u for i, u in enumerate(URLS) if i not in bad]
    errors = _errors(rows)
    assert len(errors) == len(bad) and all("BadGzipFile" in e and "damaged" in e for e in errors)
    assert all(r["html"].startswith(b"<html>") for r in rows if r["status"] == "kept")


def test_unreadable_members_between_good_ones(tmp_path, web):
    m = web["members"]
    not_gzip = b"\x00" * 300 + b"this is not a gzip member"
    garbage_record = gzip.compress(b"garbage line\r\nmore garbage\r\n\r\n")
    rows = _read(tmp_path / "web.warc.gz", b"".join(m[:3] + [not_gzip] + m[3:6] + [garbage_record] + m[6:]))
    assert _kept(rows) == URLS
    errors = _errors(rows)
    assert len(errors) == 2 and "BadGzipFile" in errors[0] and "ArchiveLoadFailed" in errors[1]
    assert rows[3]["id"] == doc_id(f"web.warc.gz@{sum(map(len, m[:3]))}+0")  # source + byte offset


def test_broken_header_of_a_warc_record_is_skipped_as_before(tmp_path, web):
    m = web["members"]
    broken = gzip.compress(b"WARC/1.0\r\nbroken header without colon\r\nContent-Length: x\r\n\r\n\r\n\r\n")
    rows = _read(tmp_path / "web.warc.gz", b"".join(m[:2] + [broken] + m[2:]))
    assert _kept(rows) == URLS and [r["status"] for r in rows][2] == "skipped:read:None"


# ---------------------------------------------------------------- WARC, whole-file gzip and uncompressed

def test_whole_file_gzip_and_uncompressed_read_every_record(tmp_path, web):
    per_record = _read(tmp_path / "a.warc.gz", web["data"])
    whole = _read(tmp_path / "a.warc.gz", gzip.compress(b"".join(web["plain"])))
    plain = _read(tmp_path / "a.warc.gz", b"".join(web["plain"]))  # a .warc.gz name, not gzipped
    assert _kept(per_record) == URLS and not _errors(per_record)
    assert whole == per_record and plain == per_record
    other_name = _read(tmp_path / "a.warc", b"".join(web["plain"]))  # another source: other ids
    assert [r | {"id": "", "source": ""} for r in other_name] == [r | {"id": "", "source": ""} for r in per_record]


def _with_length(record: bytes, delta: int) -> bytes:
    return re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m[1]) + delta), record, count=1)


DAMAGE = {"status line": lambda r: b"XXXX/9.9" + r[8:],
          "zeroed block": lambda r: b"\x00" * 64 + r[64:],
          "length too long": lambda r: _with_length(r, 300),   # swallows the next record's header
          "length too short": lambda r: _with_length(r, -300),
          "bytes missing": lambda r: r[:2000] + r[2300:]}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_uncompressed_warc_with_a_damaged_record(tmp_path, web, kind):
    records = list(web["plain"])
    records[4] = DAMAGE[kind](records[4])
    rows = _read(tmp_path / "web.warc", b"".join(records))
    assert _kept(rows) == URLS[:4] + URLS[5:] and len(_errors(rows)) == 1


@pytest.mark.parametrize("kind", ["status line", "zeroed block", "length too short"])
def test_whole_file_gzip_with_a_damaged_record(tmp_path, web, kind):
    records = list(web["plain"])
    records[4] = DAMAGE[kind](records[4])
    rows = _read(tmp_path / "web.warc.gz", gzip.compress(b"".join(records)))
    assert _kept(rows) == URLS[:4] + URLS[5:] and len(_errors(rows)) == 1


# ---------------------------------------------------------------- WARC, cut short

def test_truncated_per_record_gzip(tmp_path, web):
    m = web["members"]
    rows = _read(tmp_path / "cut.warc.gz", b"".join(m[:5]) + m[5][:len(m[5]) // 2])
    assert _kept(rows) == URLS[:5] and len(rows) == 6
    assert rows[-1]["status"].startswith("errored:read:EOFError") and "truncated" in rows[-1]["status"]


def test_truncated_whole_file_gzip(tmp_path, web):
    whole = gzip.compress(b"".join(web["plain"]))
    cut = whole[:len(whole) // 2]
    readable = len(zlib.decompressobj(31).decompress(cut))  # what survives the cut
    ends = [sum(map(len, web["plain"][:i + 1])) for i in range(N)]
    cut_record = next(i for i, end in enumerate(ends) if end > readable)
    assert ends[cut_record] - readable > 100 and readable - (ends[cut_record - 1] if cut_record else 0) > 100
    rows = _read(tmp_path / "cut.warc.gz", cut)
    assert _kept(rows) == URLS[:cut_record] and len(rows) == cut_record + 1
    assert rows[-1]["status"].startswith("errored:read:EOFError") and "truncated" in rows[-1]["status"]


def test_truncated_uncompressed_warc(tmp_path, web):
    data = b"".join(web["plain"])
    rows = _read(tmp_path / "cut.warc", data[:sum(map(len, web["plain"][:6])) - 1000])
    assert _kept(rows) == URLS[:6 - 1] and len(rows) == 6 and "truncated" in rows[-1]["status"]


def test_whole_file_gzip_is_streamed(tmp_path, web):
    import tracemalloc

    path = tmp_path / "big.warc.gz"
    path.write_bytes(gzip.compress(b"".join(web["plain"]) * 150, compresslevel=1))
    tracemalloc.start()
    try:
        n = sum(r["status"] == "kept" for r in iter_file_rows(str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 150 * N and peak < 2_000_000, peak  # the file is ~11 MB uncompressed, ~3 MB gzipped


# ---------------------------------------------------------------- real files

REAL = {"cc-main-2020-34-sample.warc.gz": (50, {"skipped:read:warcinfo": 1, "skipped:read:request": 17,
                                                "kept": 16, "skipped:read:metadata": 16}, "2e52177115e19abc"),
        "cc-main-2024-22-whirlwind.warc.gz": (4, {"skipped:read:warcinfo": 1, "skipped:read:request": 1,
                                                  "kept": 1, "skipped:read:metadata": 1}, "243210e3e86ac51a"),
        "cc-main-2024-22-whirlwind.warc.wet.gz": (2, {"skipped:read:warcinfo": 1, "kept": 1}, "72fb82c2d52c7f7e"),
        "wget-crawl-2024-sample.warc.gz": (48, {"skipped:read:warcinfo": 1, "skipped:read:request": 22, "kept": 22,
                                               "skipped:read:metadata": 1, "skipped:read:resource": 2},
                                           "b1ba09e224b42c55")}


def _digest(rows) -> str:
    return hashlib.sha1("\n".join(f"{r['id']} {r['status']}" for r in rows).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_read_as_before(shared_data, name):
    """Numbers, statuses and ids as the warcio ArchiveIterator reader gave them (measured before the
    resyncing reader replaced it)."""
    rows = list(iter_file_rows(str(shared_data / "warc" / name)))
    n, statuses, digest = REAL[name]
    assert len(rows) == n and dict(Counter(r["status"] for r in rows)) == statuses
    assert _digest(rows) == digest


def test_damaged_copies_of_the_real_cc_sample(tmp_path, shared_data):
    data = (shared_data / "warc" / "cc-main-2020-34-sample.warc.gz").read_bytes()
    good = list(iter_file_rows(str(shared_data / "warc" / "cc-main-2020-34-sample.warc.gz")))
    members = _members(data)
    assert len(members) == len(good) == 50
    response = [i for i, r in enumerate(good) if r["status"] == "kept"]
    bad = [response[3], response[len(response) // 2], 30]
    members = [_damaged(m) if i in bad else m for i, m in enumerate(members)]
    rows = _read(tmp_path / "cc-main-2020-34-sample.warc.gz", b"".join(members))
    assert len(rows) == 50 and [i for i, r in enumerate(rows) if r["status"].startswith("errored:read:")] == bad
    assert [r for i, r in enumerate(rows) if i not in bad] == [r for i, r in enumerate(good) if i not in bad]
    whole = gzip.compress(b"".join(zlib.decompress(m, 31) for m in _members(data)))
    assert _read(tmp_path / "cc-main-2020-34-sample.warc.gz", whole) == good


# ---------------------------------------------------------------- jsonl

def _jsonl(n: int) -> bytes:
    return b"".join(b'{"id": "d%d", "text": "document %d: %s"}\n' % (i, i, _page(i)[:300].replace(b'"', b"'"))
                    for i in range(n))


def test_broken_jsonl_line_is_one_error(tmp_path):
    lines = _jsonl(30).split(b"\n")
    lines[12] = lines[12][:40]
    for name, data in (("docs.jsonl", b"\n".join(lines)), ("docs.jsonl.gz", gzip.compress(b"\n".join(lines)))):
        rows = _read(tmp_path / name, data)
        assert [r["id"] for r in rows if r["status"] == "kept"] == [f"d{i}" for i in range(30) if i != 12]
        assert len(_errors(rows)) == 1 and "JSONDecodeError" in rows[12]["status"]


def test_truncated_jsonl_gz_keeps_every_complete_line(tmp_path):
    whole = gzip.compress(_jsonl(400))
    cut = whole[:len(whole) * 6 // 10]
    complete = zlib.decompressobj(31).decompress(cut).count(b"\n")
    assert 100 < complete < 300
    rows = _read(tmp_path / "docs.jsonl.gz", cut)
    assert [r["id"] for r in rows if r["status"] == "kept"] == [f"d{i}" for i in range(complete)]
    assert len(rows) == complete + 1 and rows[-1]["status"].startswith("errored:read:EOFError")
    assert rows[-1]["id"] == doc_id(f"docs.jsonl.gz:{complete}")


# ---------------------------------------------------------------- parquet

def test_parquet_with_a_corrupt_row_group(tmp_path):
    path = tmp_path / "docs.parquet"
    texts = [_page(i).decode()[:400] for i in range(100)]
    pq.write_table(pa.table({"text": texts, "n": list(range(100))}), path, row_group_size=20)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 5
    data = bytearray(path.read_bytes())
    page = meta.row_group(2).column(0).data_page_offset
    data[page:page + 24] = b"\xff" * 24  # the first data page of row group 2: its header
    path.write_bytes(bytes(data))
    pf = pq.ParquetFile(path)
    with pytest.raises(Exception):
        pf.read_row_group(2)
    assert all(pf.read_row_group(g).num_rows == 20 for g in (0, 1, 3, 4))
    rows = _read(path, bytes(data))
    assert len(rows) == 100 and [r["text"] for r in rows if r["status"] == "kept"] == texts[:40] + texts[60:]
    assert len(_errors(rows)) == 20
    assert [r["id"] for r in rows[40:60]] == [doc_id(f"docs.parquet:2:{i}") for i in range(20)]


def test_parquet_with_an_unreadable_footer_is_one_error(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
    path.write_bytes(path.read_bytes()[:-12] + b"\x00" * 12)
    rows = list(iter_file_rows(str(path)))
    assert len(rows) == 1 and rows[0]["status"].startswith("errored:read:")
