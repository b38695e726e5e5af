"""Storage for curation inputs, outputs and markers: a local path, `file://`, `s3://` or `gs://`, one API.

Every path the curation stage writes (parts, completion markers, dedup phases, train/val parquet,
the report) goes through these functions, so an output folder may be a bucket. pyarrow's file
systems do the I/O, built once per process, bucket and settings. Inputs are read by formats.py with
plain `fsspec.open(url, "rb")`; `configure_io` sets fsspec's global config so that s3fs / gcsfs
use the same endpoint, anonymity and retries as pyarrow here.

    store.configure_io(anonymous=None, max_attempts=10)        # in the driver
    store.configure_io()                                        # in every task: same settings
    write_bytes("s3://bucket/curated/parts/p-00001.done", b"{...}")
    exists("s3://bucket/curated/parts/p-00001.done")          # True
    list_files("s3://bucket/curated/parts")                     # sorted full URLs
    with open_output("out/train/part-0.parquet") as f: ...      # local paths get their folders made

Environment (the standard AWS / GCS variables, read by configure_io and honoured by both pyarrow
and fsspec):
  AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL   an S3-compatible endpoint (MinIO, a mirror, moto).
                  pyarrow's S3FileSystem(...) constructor ignores both (only FileSystem.from_uri
                  reads them) and botocore reads them itself: passed explicitly to both here.
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, ~/.aws/*, instance
                  roles: credentials, found by each client's own chain (never copied here).
  AWS_REGION, else AWS_DEFAULT_REGION (else the profile's region; else the bucket's own region,
                  looked up once; us-east-1 with a custom endpoint).
  STORAGE_EMULATOR_HOST   a GCS endpoint (fake-gcs-server); gcsfs reads it itself.
  BESPOKE_STORAGE_ANONYMOUS (true / false / auto) and BESPOKE_STORAGE_MAX_ATTEMPTS: what
                  configure_io's two arguments set (an argument given is written here), so that
                  tasks calling configure_io() with none follow the driver; on a cluster put
                  `io_env()` in the Ray runtime_env's env_vars.
Tests: tests/test_curation_storage.py (a local moto S3 server; `pytest tests/test_curation_storage.py`).
"""
from __future__ import annotations

import datetime
import functools
import os
import threading
from urllib.parse import urlparse

import pyarrow.fs as pafs

ANONYMOUS_ENV = "BESPOKE_STORAGE_ANONYMOUS"
MAX_ATTEMPTS_ENV = "BESPOKE_STORAGE_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 10
# Environment variables that change what configure_io builds (its cache key).
_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
             "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
             "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", ANONYMOUS_ENV, MAX_ATTEMPTS_ENV)
_lock = threading.Lock()
_state: dict = {"key": None, "settings": None}


def is_url(path: str) -> bool:
    """True for `scheme://...` paths other than file:// (which is a local path)."""
    scheme = urlparse(str(path)).scheme
    return len(scheme) > 1 and scheme != "file"


def join(base: str, *parts: str) -> str:
    """base/part/...: URLs joined with '/', local paths with os.path.join."""
    base = str(base)
    if is_url(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])
    return os.path.join(base, *parts)


# ---------------------------------------------------------------- configuration

def configure_io(anonymous: bool | None = None, max_attempts: int | None = None) -> dict:
    """Choose how object storage is reached in this process, for pyarrow (`filesystem`) and for
    fsspec (`fsspec.config.conf["s3"]`, `["gs"]`, used by every later `fsspec.open("s3://...")`).

    anonymous: True = unsigned requests (public buckets), False = credentials, None = keep
    $BESPOKE_STORAGE_ANONYMOUS (true / false / auto; unset = auto: anonymous only when no
    credentials are found). max_attempts: attempts per request before it fails, retried with
    exponential backoff on throttling (S3 SlowDown / 503) and transient errors; None = keep
    $BESPOKE_STORAGE_MAX_ATTEMPTS (unset = 10). A value given is written to that variable, so a
    later configure_io() in this process, and processes started from it (an embedded Ray's
    workers), keep it; for a cluster's workers pass `io_env()` in the Ray runtime_env.
    Idempotent and cheap after the first call (a compare of a few environment variables): call
    it in the driver and at the start of every Ray task. Returns `settings()`."""
    if anonymous is not None:
        os.environ[ANONYMOUS_ENV] = "true" if anonymous else "false"
    if max_attempts is not None:
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError(f"max_attempts: must be an integer >= 1, got {max_attempts!r}")
        os.environ[MAX_ATTEMPTS_ENV] = str(max_attempts)
    key = tuple(os.environ.get(k) for k in _ENV_KEYS)
    with _lock:
        if _state["key"] == key:
            return _state["settings"]
        settings = _resolve()
        _apply_fsspec(settings)
        _state["key"], _state["settings"] = key, settings
        return settings


def settings() -> dict:
    """The settings in force (configure_io() is called first when the environment changed):
    {"anonymous": bool | None, "s3_anonymous": bool, "max_attempts": int,
     "s3_endpoint": str | None, "region": str | None, "gs_endpoint": str | None}.
    `anonymous` is what was asked for (None = auto); `s3_anonymous` what S3 uses."""
    return configure_io()


def io_env() -> dict[str, str]:
    """The environment variables behind the current settings (storage choice, endpoints, region;
    never credentials), for a Ray runtime_env: `ray.init(runtime_env={"env_vars": store.io_env()})`
    makes configure_io() in every task choose what configure_io(...) chose in the driver."""
    names = (ANONYMOUS_ENV, MAX_ATTEMPTS_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
             "AWS_DEFAULT_REGION", "STORAGE_EMULATOR_HOST")
    return {k: os.environ[k] for k in names if os.environ.get(k)}


def _env_anonymous() -> bool | None:
    raw = os.environ.get(ANONYMOUS_ENV, "").strip().lower()
    if raw in ("", "auto", "none", "null"):
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ANONYMOUS_ENV}: expected true, false or auto, got {raw!r}")


def _resolve() -> dict:
    anonymous = _env_anonymous()
    raw = os.environ.get(MAX_ATTEMPTS_ENV) or str(DEFAULT_MAX_ATTEMPTS)
    try:
        max_attempts = int(raw)
    except ValueError:
        max_attempts = 0
    if max_attempts < 1:
        raise ValueError(f"{MAX_ATTEMPTS_ENV}: expected an integer >= 1, got {raw!r}")
    endpoint = None
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or _profile_region()
    gs_endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or None
    s3_anonymous = anonymous if anonymous is not None else not _have_aws_credentials(_cred_env())
    return {"anonymous": anonymous, "s3_anonymous": s3_anonymous, "max_attempts": max_attempts,
            "s3_endpoint": endpoint, "region": region, "gs_endpoint": gs_endpoint}


def _cred_env() -> tuple:
    return tuple(os.environ.get(k) for k in _ENV_KEYS if k.startswith("AWS_") and "ENDPOINT" not in k)


@functools.lru_cache(maxsize=8)
def _have_aws_credentials(_env: tuple) -> bool:
    """Whether botocore's credential chain (env, profile files, SSO, container / instance roles)
    finds anything; once per process and environment (the instance-metadata probe costs up to
    about a second off EC2; AWS_EC2_METADATA_DISABLED=true skips it)."""
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return True  # the first link of every chain; no need to import botocore
    try:
        import botocore.session
    except ImportError:  # no botocore: look only at the environment and the default files
        return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
                    or os.path.exists(os.path.expanduser("~/.aws/credentials")))
    try:
        return botocore.session.Session().get_credentials() is not None
    except Exception:  # noqa: BLE001 - a broken profile means: no usable credentials
        return False


def _profile_region() -> str | None:
    try:
        import botocore.session

        return botocore.session.Session().get_config_variable("region") or None
    except Exception:  # noqa: BLE001
        return None


def _s3_options(s: dict) -> dict:
    """s3fs keyword arguments for these settings (what fsspec.config.conf["s3"] holds)."""
    # botocore's "standard" mode retries throttling codes (SlowDown, ...) and 500/502/503/504 with
    # exponential backoff and jitter (at most 20 s a wait), max_attempts counting the first try.
    opts: dict = {"anon": s["s3_anonymous"],
                  "config_kwargs": {"retries": {"max_attempts": s["max_attempts"], "mode": "standard"}}}
    if s["s3_endpoint"]:
        opts["endpoint_url"] = s["s3_endpoint"]
    if s["region"]:
        opts["client_kwargs"] = {"region_name": s["region"]}
    return opts


def _gs_options(s: dict) -> dict:
    """gcsfs keyword arguments: token "anon" when anonymous was asked for. With None, gcsfs's own
    chain (google default credentials, gcloud cache, metadata server) ends in anonymous itself."""
    opts: dict = {}
    if s["anonymous"] is True:
        opts["token"] = "anon"
    elif s["anonymous"] is False:
        opts["token"] = "google_default"
    if s["gs_endpoint"]:
        opts["endpoint_url"] = s["gs_endpoint"]
    return opts


_OUR_KEYS = {"s3": ("anon", "config_kwargs", "endpoint_url", "client_kwargs"),
             "gs": ("token", "endpoint_url")}


def _apply_fsspec(s: dict) -> None:
    import fsspec.config

    for proto, opts in (("s3", _s3_options(s)), ("gs", _gs_options(s))):
        conf = fsspec.config.conf.setdefault(proto, {})
        for k in _OUR_KEYS[proto]:  # keys from an earlier call that no longer apply
            conf.pop(k, None)
        conf.update(opts)
    # s3fs also retries on its own, around botocore (5 tries: broken reads, SlowDown that reached
    # it); bound it by max_attempts so that max_attempts=1 means one try. A class attribute: s3fs
    # takes no argument for it.
    try:
        import s3fs

        s3fs.S3FileSystem.retries = min(s["max_attempts"], 5)
    except ImportError:
        pass


# ---------------------------------------------------------------- pyarrow file systems

def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow file system, path inside it) for a local path or URL; s3:// and gs:// file systems
    follow configure_io's settings (configure_io() with defaults when it was not called)."""
    path = str(path)
    if not is_url(path):
        if path.startswith("file://"):
            path = urlparse(path).path
        return pafs.LocalFileSystem(), os.path.abspath(path)
    parsed = urlparse(path)
    s = settings()
    key = (s["s3_anonymous"], s["anonymous"], s["max_attempts"], s["s3_endpoint"], s["region"], s["gs_endpoint"])
    fs = _remote_fs(parsed.scheme, parsed.netloc, key)
    return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")


@functools.lru_cache(maxsize=None)
def _remote_fs(scheme: str, bucket: str, key: tuple) -> pafs.FileSystem:
    s3_anonymous, anonymous, max_attempts, endpoint, region, gs_endpoint = key
    if scheme in ("s3", "s3a"):
        return _s3_filesystem(bucket, s3_anonymous, max_attempts, endpoint, region)
    if scheme in ("gs", "gcs"):
        return _gcs_filesystem(anonymous, max_attempts, gs_endpoint)
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    return fs


def _s3_filesystem(bucket: str, anonymous: bool, max_attempts: int, endpoint: str | None,
                   region: str | None) -> pafs.S3FileSystem:
    kwargs: dict = {"anonymous": anonymous,
                    # The AWS SDK's standard strategy: throttling (SlowDown) and 5xx retried with
                    # exponential backoff; max_attempts counts the first try (pyarrow's default: 3).
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts)}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
    kwargs["region"] = region or ("us-east-1" if endpoint else _bucket_region(bucket))
    return pafs.S3FileSystem(**kwargs)


# Buckets whose region is known, so that no lookup is needed (it takes seconds without a route to AWS).
KNOWN_REGIONS = {"commoncrawl": "us-east-1"}


@functools.lru_cache(maxsize=None)
def _bucket_region(bucket: str) -> str:
    """The region of an AWS bucket (one HEAD request, works without credentials); us-east-1
    (Common Crawl's) when it cannot be found."""
    if bucket in KNOWN_REGIONS:
        return KNOWN_REGIONS[bucket]
    try:
        return pafs.resolve_s3_region(bucket)
    except Exception:  # noqa: BLE001
        return "us-east-1"


def _gcs_filesystem(anonymous: bool | None, max_attempts: int, endpoint: str | None) -> pafs.GcsFileSystem:
    if anonymous is None:
        anonymous = not _have_gcs_credentials()
    # The GCS client retries transient errors (429, 5xx) with exponential backoff for a time, not
    # a count: about the time max_attempts doubling waits take (2^(n-1) s), at most 15 minutes.
    limit = 0 if max_attempts <= 1 else min(900, 2 ** (max_attempts - 1))
    kwargs: dict = {"anonymous": anonymous, "retry_time_limit": datetime.timedelta(seconds=limit)}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    return pafs.GcsFileSystem(**kwargs)


@functools.lru_cache(maxsize=1)
def _have_gcs_credentials() -> bool:
    """google-auth's default chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, the metadata
    server); without google-auth, only the first two."""
    try:
        import google.auth

        google.auth.default()
        return True
    except ImportError:
        adc = os.path.expanduser("~/.config/gcloud/application_default_credentials.json")
        return bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")) or os.path.exists(adc)
    except Exception:  # noqa: BLE001 - DefaultCredentialsError and friends
        return False


# ---------------------------------------------------------------- operations

def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def read_bytes(path: str) -> bytes:
    """The object's bytes as stored (a .gz stays compressed: pyarrow would gunzip by suffix)."""
    fs, p = filesystem(path)
    with fs.open_input_stream(p, compression=None) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole object. Local files go to a temporary name first and are renamed, so a
    reader never sees half a marker; an object store's PUT (or multipart upload, completed at
    close) is already all or nothing."""
    fs, p = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    with fs.open_output_stream(p, compression=None) as f:
        f.write(data)


def open_output(path: str):
    """A writable binary stream, bytes stored as written (no compression by suffix); local
    folders are created. On an object store the object appears only when the stream closes."""
    fs, p = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    return fs.open_output_stream(p, compression=None)


def open_input(path: str):
    """A seekable binary file (what pyarrow.parquet.ParquetFile wants)."""
    fs, p = filesystem(path)
    return fs.open_input_file(p)


def read_table(path: str, columns: list[str] | None = None):
    """One parquet file as a pyarrow Table (local, s3:// or gs://)."""
    import pyarrow.parquet as pq

    fs, p = filesystem(path)
    return pq.read_table(p, columns=columns, filesystem=fs)


def list_files(path: str, suffix: str = "") -> list[str]:
    """Every file under `path` (recursive) ending in `suffix`, as full paths/URLs, sorted;
    [] when `path` does not exist."""
    fs, p = filesystem(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
    if is_url(str(path)):
        scheme = urlparse(str(path)).scheme
        return [f"{scheme}://{f}" for f in found]
    return found


def read_json_files(paths: list[str], threads: int = 32) -> dict[str, object]:
    """{path: parsed JSON} of the paths that exist, read concurrently: a rerun over a crawl reads
    tens of thousands of markers, one request each (serially ~30 ms apiece on S3)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    def read(path: str):
        try:
            return path, json.loads(read_bytes(path))
        except FileNotFoundError:
            return path, None

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return {p: data for p, data in pool.map(read, paths) if data is not None}


def delete_tree(path: str) -> None:
    """Remove a folder (or prefix) and everything under it, or one file; nothing when absent."""
    fs, p = filesystem(path)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.NotFound:
        return
    if kind == pafs.FileType.File:
        fs.delete_file(p)
        return
    fs.delete_dir_contents(p, missing_dir_ok=True)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.delete_dir(p)
