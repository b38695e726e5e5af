"""Storage for curation outputs and markers: a local path, `file://`, `s3://` or `gs://`, one API.

Every path the curation stage writes (parts, completion markers, dedup phases, train/val parquet,
the report) goes through these functions, so an output folder may be a bucket. pyarrow's file
systems do the I/O (`pyarrow.fs.FileSystem.from_uri`), built once per process and bucket.

    write_bytes("s3://bucket/curated/parts/p-00001.done", b"{...}")
    exists("s3://bucket/curated/parts/p-00001.done")          # True
    list_files("s3://bucket/curated/parts")                     # sorted full URLs
    with open_output("out/train/part-0.parquet") as f: ...      # local paths get their folders made
"""
from __future__ import annotations

import functools
import os
from urllib.parse import urlparse

import pyarrow.fs as pafs


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


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow file system, path inside it) for a local path or URL."""
    path = str(path)
    if not is_url(path):
        if path.startswith("file://"):
            path = urlparse(path).path
        return pafs.LocalFileSystem(), os.path.abspath(path)
    parsed = urlparse(path)
    fs = _remote_fs(parsed.scheme, parsed.netloc)
    return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")


@functools.lru_cache(maxsize=None)
def _remote_fs(scheme: str, bucket: str) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    return fs


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def read_bytes(path: str) -> bytes:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole object. Local files go to a temporary name first and are renamed, so a
    reader never sees half a marker; an object store's PUT is already all or nothing."""
    fs, p = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
        return
    with fs.open_output_stream(p) as f:
        f.write(data)


def open_output(path: str):
    """A writable binary stream (local folders are created)."""
    fs, p = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    return fs.open_output_stream(p)


def open_input(path: str):
    """A seekable binary file (what pyarrow.parquet.ParquetFile wants)."""
    fs, p = filesystem(path)
    return fs.open_input_file(p)


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


def delete_tree(path: str) -> None:
    """Remove a folder (or prefix) and everything under it; nothing when it is absent."""
    fs, p = filesystem(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return
    fs.delete_dir_contents(p, missing_dir_ok=True)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.delete_dir(p)
