"""Inputs by manifest (Common Crawl's `warc.paths.gz`, `wet.paths.gz`) and seeded subsets of inputs.

A manifest lists one file a line, relative to the crawl's bucket, e.g.
`crawl-data/CC-MAIN-2024-22/segments/1715971057216.39/warc/CC-MAIN-20240517233122-...-00000.warc.gz`.
An input ending in `.paths.gz` or `.paths` (gzipped or not, local or a URL) stands for those files:

    expand_manifest("s3://commoncrawl/crawl-data/CC-MAIN-2024-22/wet.paths.gz")
        # ["s3://commoncrawl/crawl-data/CC-MAIN-2024-22/segments/.../wet/...warc.wet.gz", ...]
    expand_manifest("wet.paths.gz", base_url="https://data.commoncrawl.org/")   # anonymous HTTPS
    choose_files(files, max_files=4, fraction=0.01, seed=0)                   # a trial run

Relative entries are joined to `base_url` (CurateConfig.input_base_url) when given, else to the
root of the manifest's own bucket or host (`s3://commoncrawl/` for a manifest in that bucket,
`https://data.commoncrawl.org/` for one read from there, `s3://my-mirror/` for a mirror), and to
`s3://commoncrawl/` for a local manifest. Entries that are already URLs or absolute paths stay.
Common Crawl asks that access from outside AWS go through https://data.commoncrawl.org/; S3
reads (`s3://commoncrawl/`) belong in us-east-1 (see docs/scaling.md, "Object storage").
Tests: tests/test_curation_storage.py.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from urllib.parse import urlparse

from pipelines.curation import store

MANIFEST_SUFFIXES = (".paths.gz", ".paths")
COMMONCRAWL = "s3://commoncrawl/"
_NAMED = re.compile(r"^([A-Za-z_][\w.-]*)=(.+)$")  # `name=path`, as readers.split_name


def is_manifest(path: str) -> bool:
    """True for a manifest: a path or URL ending in .paths.gz or .paths (a `name=` prefix allowed)."""
    return _unnamed(str(path)).lower().rstrip("/").endswith(MANIFEST_SUFFIXES)


def manifest_base(path: str, base_url: str = "") -> str:
    """The base the manifest's relative entries are joined to, ending in '/' for URLs."""
    if base_url:
        return base_url if base_url.endswith("/") or not store.is_url(base_url) else base_url + "/"
    if store.is_url(path):
        parsed = urlparse(path)
        return f"{parsed.scheme}://{parsed.netloc}/"
    return COMMONCRAWL


def expand_manifest(path: str, base_url: str = "") -> list[str]:
    """The files a manifest lists, in its order (duplicates dropped), as full URLs or paths.
    Blank lines and `#` comments are skipped; content is gunzipped when it starts with the gzip
    magic, whatever the suffix. URLs are read with fsspec after store.configure_io() (endpoint,
    anonymity, retries)."""
    path = _unnamed(str(path))
    base = manifest_base(path, base_url)
    out, seen = [], set()
    for line in _read(path).decode("utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        full = _resolve(entry, base)
        if full not in seen:
            seen.add(full)
            out.append(full)
    return out


def choose_files(files: list[str], max_files: int = 0, fraction: float = 1.0, seed: int = 0) -> list[str]:
    """A seeded subset of `files`, sorted: those whose hash of (seed, path) falls below
    `fraction` (all when 1.0), then at most `max_files` of them (0 = no cap): the ones with the
    smallest hashes, so a larger cap adds files without changing the ones already chosen.
    The choice depends only on the seed and each path (not on list order), so reruns choose the
    same files; a path is hashed without its scheme and host, so s3://commoncrawl/crawl-data/X and
    https://data.commoncrawl.org/crawl-data/X count as the same file."""
    if not 0 < fraction <= 1:
        raise ValueError(f"input_sample: must be in (0, 1], got {fraction}")
    if max_files < 0:
        raise ValueError(f"max_input_files: must be >= 0 (0 = all), got {max_files}")
    if fraction >= 1 and not max_files:
        return sorted(files)
    scored = sorted((_score(f, seed), f) for f in files)
    kept = [(h, f) for h, f in scored if h < fraction] if fraction < 1 else scored
    if max_files:
        kept = kept[:max_files]
    return sorted(f for _, f in kept)


def _score(path: str, seed: int) -> float:
    """A number in [0, 1) from (seed, the path without scheme, host and `name=`)."""
    key = _unnamed(path)
    if store.is_url(key):
        key = urlparse(key).path
    digest = hashlib.blake2b(f"{seed}\0{key.lstrip('/')}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def _unnamed(item: str) -> str:
    m = _NAMED.match(item)
    return m.group(2) if m and "://" not in m.group(1) else item


def _resolve(entry: str, base: str) -> str:
    if store.is_url(entry) or entry.startswith(("/", "file://")):
        return entry
    if store.is_url(base):
        return base + entry.lstrip("/")
    return os.path.join(base, entry)


def _read(path: str) -> bytes:
    if store.is_url(path):
        import fsspec

        store.configure_io()
        with fsspec.open(path, "rb", compression=None) as f:
            data = f.read()
    else:
        with open(urlparse(path).path if path.startswith("file://") else path, "rb") as f:
            data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
