"""Object storage for the curation stage (store.py) and Common Crawl manifests (manifest.py),
against a local S3-compatible server (moto, the `s3_server` fixture in conftest.py, 127.0.0.1).

    pytest tests/test_curation_storage.py --durations=0

Covers: store's write / read / exists / list / delete on s3://, a marker visible only whole;
fsspec and readers.iter_file_rows reading real WARC / WET files (../shared/data/warc) from the
server; manifests (local, gzipped or not, and in a bucket) expanded against the server, and the
seeded file choice; anonymous mode (unsigned requests: moto does not enforce auth, so only that
the clients are built unsigned and work, and that "auto" turns anonymous without credentials);
throttling through a proxy that answers 503 SlowDown, survived by pyarrow and fsspec with retries
and failed with max_attempts=1. No network, no Ray.
"""
from __future__ import annotations

import gzip
import http.client
import http.server
import threading
import time

import pytest

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

from pipelines.curation import manifest, store  # noqa: E402

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message><RequestId>TEST</RequestId></Error>")
CRAWL = "crawl-data/CC-MAIN-2024-22"
KEYS = [f"{CRAWL}/segments/1715971057216.39/warc/CC-MAIN-20240517233122-20240518023122-{i:05d}.warc.gz"
        for i in range(3)]


@pytest.fixture
def io(s3_server, monkeypatch):
    """Storage settings as configure_io's defaults for one test; fsspec's global config and s3fs's
    retry count restored afterwards (configure_io changes both)."""
    import fsspec.config
    import s3fs

    monkeypatch.setenv(store.ANONYMOUS_ENV, "auto")
    monkeypatch.setenv(store.MAX_ATTEMPTS_ENV, "10")
    saved = {k: dict(v) for k, v in fsspec.config.conf.items()}
    retries = s3fs.S3FileSystem.retries
    store.configure_io()
    yield s3_server
    fsspec.config.conf.clear()
    fsspec.config.conf.update(saved)
    s3fs.S3FileSystem.retries = retries


def _fsspec_read(url: str) -> bytes:
    import fsspec

    with fsspec.open(url, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- store on s3://

def test_store_roundtrip_on_s3(io):
    t0 = time.perf_counter()
    base = f"s3://{io.bucket('store-rt')}/curated"
    assert store.settings()["s3_endpoint"] == io.endpoint and store.settings()["s3_anonymous"] is False
    assert not store.exists(f"{base}/parts/p-00001.done.json") and store.list_files(base) == []
    store.write_bytes(f"{base}/parts/p-00001.done.json", b'{"rows": 3}')
    store.write_bytes(f"{base}/parts/p-00002.done.json", b'{"rows": 4}')
    store.write_bytes(f"{base}/report.json", b"{}")
    with store.open_output(f"{base}/train/part-0.parquet") as f:
        f.write(b"PAR1")
    assert store.exists(f"{base}/parts/p-00001.done.json")
    assert store.read_bytes(f"{base}/parts/p-00002.done.json") == b'{"rows": 4}'
    with store.open_input(f"{base}/train/part-0.parquet") as f:
        assert f.size() == 4 and f.read() == b"PAR1"
    assert store.list_files(base, suffix=".done.json") == [
        f"{base}/parts/p-00001.done.json", f"{base}/parts/p-00002.done.json"]
    assert len(store.list_files(base)) == 4
    # bytes stay as written whatever the suffix (pyarrow alone would gunzip / gzip a .gz)
    packed = gzip.compress(b"crawl-data/a.warc.gz\n")
    store.write_bytes(f"{base}/warc.paths.gz", packed)
    assert store.read_bytes(f"{base}/warc.paths.gz") == packed
    assert io.client.get_object(Bucket="store-rt", Key="curated/warc.paths.gz")["Body"].read() == packed
    store.delete_tree(f"{base}/warc.paths.gz")
    # what pyarrow wrote, boto3 sees (same server, same keys)
    assert io.client.get_object(Bucket="store-rt", Key="curated/report.json")["Body"].read() == b"{}"
    store.delete_tree(f"{base}/parts")
    assert store.list_files(base) == [f"{base}/report.json", f"{base}/train/part-0.parquet"]
    store.delete_tree(f"{base}/absent")  # nothing to do
    store.delete_tree(base)
    assert store.list_files(base) == [] and not store.exists(f"{base}/report.json")
    assert time.perf_counter() - t0 < 20


def test_marker_is_visible_only_whole(io):
    """A reader polling while a large marker is written (a multipart upload) sees it absent or
    whole, never part of it; nothing else (temporary objects) appears beside it."""
    url = f"s3://{io.bucket('store-atomic')}/out/parts/p-00007.done.json"
    payload = bytes(range(256)) * (12 * 4096)  # 12 MiB: more than one 5 MiB multipart part
    seen, done = [], threading.Event()

    def poll():
        while not done.is_set():
            if store.exists(url):
                seen.append(len(store.read_bytes(url)))
            else:
                seen.append(0)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        store.write_bytes(url, payload)
    finally:
        done.set()
        reader.join()
    assert store.read_bytes(url) == payload
    assert set(seen) <= {0, len(payload)}, sorted(set(seen))
    assert store.list_files(f"s3://store-atomic/out") == [url]


# ---------------------------------------------------------------- inputs read through fsspec

def test_fsspec_and_readers_read_warc_from_s3(io, shared_data):
    from pipelines.curation.readers import iter_file_rows

    bucket = io.bucket("cc-inputs")
    names = ["cc-main-2024-22-whirlwind.warc.gz", "cc-main-2024-22-whirlwind.warc.wet.gz",
             "cc-main-2020-34-sample.warc.gz"]
    for name in names:
        io.client.upload_file(str(shared_data / "warc" / name), bucket, f"warc/{name}")
    local = shared_data / "warc" / names[0]
    assert _fsspec_read(f"s3://{bucket}/warc/{names[0]}") == local.read_bytes()
    for name in names:
        remote_rows = list(iter_file_rows(f"s3://{bucket}/warc/{name}"))
        local_rows = list(iter_file_rows(str(shared_data / "warc" / name)))
        assert remote_rows == local_rows
        assert not [r for r in remote_rows if r["status"].startswith("errored")]
        assert any(r["status"] == "kept" for r in remote_rows), name
    # a named input keeps its name as the source
    rows = list(iter_file_rows(f"web=s3://{bucket}/warc/{names[2]}"))
    assert {r["source"] for r in rows} == {"web"} and sum(r["status"] == "kept" for r in rows) == 16


# ---------------------------------------------------------------- manifests

def _manifest_bytes(keys: list[str]) -> bytes:
    return ("\n".join(keys) + "\n").encode()


def test_manifest_expands_against_s3(io, shared_data, tmp_path):
    from pipelines.curation.readers import iter_file_rows

    warc = (shared_data / "warc" / "cc-main-2024-22-whirlwind.warc.gz").read_bytes()
    for bucket in ("commoncrawl", "my-mirror"):
        io.bucket(bucket)
        for key in KEYS:
            io.client.put_object(Bucket=bucket, Key=key, Body=warc)
    cc = [f"s3://commoncrawl/{k}" for k in KEYS]

    # a local copy, gzipped (Common Crawl's form) and plain, with a comment and a blank line
    gz = tmp_path / "warc.paths.gz"
    gz.write_bytes(gzip.compress(_manifest_bytes(["# CC-MAIN-2024-22", *KEYS, ""])))
    plain = tmp_path / "wet.paths"
    plain.write_bytes(_manifest_bytes(KEYS + KEYS[:1]))  # a duplicate line is listed once
    assert manifest.is_manifest(str(gz)) and manifest.is_manifest(f"cc=s3://x/{CRAWL}/wet.paths.gz")
    assert manifest.is_manifest(str(plain)) and not manifest.is_manifest("x.warc.gz")
    assert manifest.expand_manifest(str(gz)) == cc
    assert manifest.expand_manifest(f"file://{plain}") == cc
    assert manifest.expand_manifest(str(gz), base_url="s3://my-mirror") == [f"s3://my-mirror/{k}" for k in KEYS]
    assert manifest.expand_manifest(str(gz), base_url="https://data.commoncrawl.org/") == [
        f"https://data.commoncrawl.org/{k}" for k in KEYS]
    assert manifest.expand_manifest(str(gz), base_url=str(tmp_path)) == [str(tmp_path / k) for k in KEYS]

    # a manifest in a bucket: entries are relative to that bucket (Common Crawl's or a mirror)
    io.client.put_object(Bucket="commoncrawl", Key=f"{CRAWL}/warc.paths.gz", Body=gz.read_bytes())
    io.client.put_object(Bucket="my-mirror", Key=f"{CRAWL}/warc.paths.gz", Body=gz.read_bytes())
    assert manifest.expand_manifest(f"s3://commoncrawl/{CRAWL}/warc.paths.gz") == cc
    assert manifest.expand_manifest(f"s3://my-mirror/{CRAWL}/warc.paths.gz") == [
        f"s3://my-mirror/{k}" for k in KEYS]

    # the files it lists are there and read like the local file
    files = manifest.expand_manifest(f"s3://commoncrawl/{CRAWL}/warc.paths.gz")
    assert all(store.exists(f) for f in files)
    local = list(iter_file_rows(str(shared_data / "warc" / "cc-main-2024-22-whirlwind.warc.gz")))
    remote = list(iter_file_rows(files[1]))
    assert [(r["url"], r["status"], r["html"]) for r in remote] == [(r["url"], r["status"], r["html"]) for r in local]


def test_choose_files_is_seeded_and_deterministic():
    files = [f"s3://commoncrawl/{CRAWL}/segments/s{i % 7}/warc/f-{i:05d}.warc.gz" for i in range(400)]
    assert manifest.choose_files(files, 0, 1.0, 0) == sorted(files)
    a = manifest.choose_files(files, 0, 0.25, seed=1)
    assert a == sorted(a) and 60 < len(a) < 140  # binomial(400, 0.25): 100 +- 26 at 3 sigma
    assert a == manifest.choose_files(list(reversed(files)), 0, 0.25, seed=1)  # not list order
    assert a == manifest.choose_files(files, 0, 0.25, seed=1)
    assert a != manifest.choose_files(files, 0, 0.25, seed=2)
    # the sample is nested in fraction, the cap keeps the smallest hashes (nested in the cap)
    assert set(manifest.choose_files(files, 0, 0.1, seed=1)) <= set(a)
    five, ten = manifest.choose_files(files, 5, 0.25, 1), manifest.choose_files(files, 10, 0.25, 1)
    assert len(five) == 5 and len(ten) == 10 and set(five) <= set(ten) <= set(a)
    assert len(manifest.choose_files(files, 3, 1.0, 0)) == 3
    # the same crawl file is chosen whichever mirror or `name=` it comes from
    https = [f.replace("s3://commoncrawl/", "https://data.commoncrawl.org/") for f in files]
    assert [f.replace("s3://commoncrawl/", "https://data.commoncrawl.org/") for f in a] == \
        manifest.choose_files(https, 0, 0.25, seed=1)
    assert manifest.choose_files([f"cc={f}" for f in files], 0, 0.25, 1) == [f"cc={f}" for f in a]
    with pytest.raises(ValueError, match="input_sample"):
        manifest.choose_files(files, 0, 0.0, 0)
    with pytest.raises(ValueError, match="max_input_files"):
        manifest.choose_files(files, -1, 1.0, 0)


def test_config_fields_validate():
    from pipelines.curation.config import CurateConfig

    cfg = CurateConfig(input_base_url="https://data.commoncrawl.org/", max_input_files=4, input_sample=0.5,
                       storage_anonymous=True, storage_max_attempts=3)
    assert (cfg.max_input_files, cfg.input_sample, cfg.storage_anonymous) == (4, 0.5, True)
    for bad, field in (({"input_sample": 0.0}, "input_sample"), ({"input_sample": 1.5}, "input_sample"),
                       ({"max_input_files": -1}, "max_input_files"),
                       ({"storage_max_attempts": 0}, "storage_max_attempts"),
                       ({"input_base_url": " s3://x/"}, "input_base_url")):
        with pytest.raises(ValueError, match=f"^{field}:"):
            CurateConfig(**bad)


# ---------------------------------------------------------------- anonymous access

def test_anonymous_clients(io, monkeypatch):
    """Unsigned requests: moto serves a public-read object to them and refuses a private one
    (AccessDenied), so the clients really send no signature; signed, both are served."""
    import fsspec.config
    import pyarrow.fs as pafs

    bucket = io.bucket("public-data")
    io.client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"open data", ACL="public-read")
    io.client.put_object(Bucket=bucket, Key="private/c.txt", Body=b"secret")
    assert store.read_bytes(f"s3://{bucket}/private/c.txt") == b"secret"  # signed (fake keys)
    s = store.configure_io(anonymous=True)
    assert s["s3_anonymous"] and fsspec.config.conf["s3"]["anon"] is True
    assert fsspec.config.conf["gs"]["token"] == "anon"
    fs, _ = store.filesystem(f"s3://{bucket}/a/b.txt")
    assert isinstance(fs, pafs.S3FileSystem) and fs.__reduce__()[1][0]["anonymous"] is True
    assert store.read_bytes(f"s3://{bucket}/a/b.txt") == b"open data"
    assert _fsspec_read(f"s3://{bucket}/a/b.txt") == b"open data"
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        store.read_bytes(f"s3://{bucket}/private/c.txt")
    with pytest.raises(PermissionError):
        _fsspec_read(f"s3://{bucket}/private/c.txt")
    # the choice is kept in the environment: a later configure_io() (a task) keeps it
    assert store.configure_io()["s3_anonymous"] is True and store.io_env()[store.ANONYMOUS_ENV] == "true"
    gcs, path = store.filesystem("gs://gcp-public-data-landsat/index.csv.gz")  # built only, offline
    assert isinstance(gcs, pafs.GcsFileSystem) and path == "gcp-public-data-landsat/index.csv.gz"

    # "auto": anonymous exactly when no credentials are found
    monkeypatch.setenv(store.ANONYMOUS_ENV, "auto")
    assert store.configure_io()["s3_anonymous"] is False  # the fixture's fake keys
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s = store.configure_io()
    assert s["anonymous"] is None and s["s3_anonymous"] is True and fsspec.config.conf["s3"]["anon"] is True
    assert "token" not in fsspec.config.conf["gs"]  # gcsfs's own chain ends in anonymous
    assert store.read_bytes(f"s3://{bucket}/a/b.txt") == b"open data"
    assert _fsspec_read(f"s3://{bucket}/a/b.txt") == b"open data"
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        store.read_bytes(f"s3://{bucket}/private/c.txt")
    store.configure_io(anonymous=False)
    assert fsspec.config.conf["s3"]["anon"] is False


# ---------------------------------------------------------------- throttling

class ThrottlingProxy:
    """An HTTP proxy on 127.0.0.1 that answers the next `throttle` requests with 503 SlowDown
    (S3's XML error body) and forwards every other request to `upstream_port` (moto)."""

    def __init__(self, upstream_port: int):
        self.throttle = self.requests = self.throttled = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests += 1
                    slow = proxy.throttle > 0
                    proxy.throttle -= slow
                    proxy.throttled += slow
                if slow:
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                size = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", size)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arm(self, n: int) -> None:
        with self.lock:
            self.throttle, self.requests, self.throttled = n, 0, 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(io, monkeypatch):
    p = ThrottlingProxy(io.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", p.endpoint)
    yield p
    p.close()


def test_throttling_is_retried(io, proxy):
    bucket = io.bucket("throttled")
    io.client.put_object(Bucket=bucket, Key="cc/x.warc.gz", Body=b"x" * 1000)
    url = f"s3://{bucket}/cc/x.warc.gz"
    assert store.configure_io(max_attempts=10)["s3_endpoint"] == proxy.endpoint

    proxy.arm(2)  # pyarrow (AWS SDK standard retry strategy)
    assert store.read_bytes(url) == b"x" * 1000
    assert proxy.throttled == 2 and proxy.requests >= 3
    proxy.arm(2)  # fsspec / s3fs (botocore standard retries)
    assert _fsspec_read(url) == b"x" * 1000
    assert proxy.throttled == 2 and proxy.requests >= 3

    store.configure_io(max_attempts=1)  # one try: the first 503 is final
    proxy.arm(1000)
    with pytest.raises(OSError, match="503"):
        store.read_bytes(url)
    assert proxy.requests == 1
    proxy.arm(1000)
    with pytest.raises(OSError, match="Service Unavailable"):  # s3fs's translation of the 503
        _fsspec_read(url)
    assert proxy.requests <= 3  # HEAD, then s3fs's fallback listing: each tried once
