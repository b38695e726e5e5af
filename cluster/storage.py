"""Where a run folder may live, and a clear error when several nodes cannot all see it.

    local_runs_dir("file:///mnt/shared/runs")   # -> "/mnt/shared/runs" (pyarrow's local filesystem)
    local_runs_dir("s3://bucket/runs")          # StorageError: use a shared file system (EFS, FSx, ...)
    check_shared_runs_dir("/mnt/shared/runs", shared_mounts=["/mnt/shared"], n_nodes=5)   # ok
    check_shared_runs_dir("runs", [], n_nodes=5)                                         # StorageError

Stages pass artifacts by path: curation writes parquet shards from whichever node ran the task,
tokenize memory-maps the packed ids, training workers read them and Ray Train writes checkpoints
to `runs_dir/<name>/train` (its storage_path). With more than one node every node must therefore
see the same `runs_dir` at the same path: a shared file system (EFS, FSx for Lustre, Filestore,
NFS), or a bucket mounted by a FUSE client that supports appends. Object-store URIs (s3://, gs://)
are not taken as runs_dir itself, because memory-mapped tokens, the appended training history and
the JSON indexes need a file system; `file://` URIs are (they name a local or mounted path).

A runs_dir counts as shared when it lies under one of `shared_mounts` (RunConfig, e.g.
`[/mnt/shared]`) or on a network file system according to /proc/mounts.

Pretraining checkpoints may go to a URI instead (`train.storage_path`, Ray Train's storage_path,
read and written through pyarrow.fs); `local_model_dir` brings the best one's model/ folder back.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pipelines.config import ConfigError

OBJECT_STORE_SCHEMES = {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "hdfs", "viewfs"}
# File system types that every node can mount (network or FUSE bucket clients).
NETWORK_FS = {"nfs", "nfs4", "lustre", "cifs", "smb3", "ceph", "glusterfs", "gpfs", "beegfs", "efs",
              "fuse.gcsfuse", "fuse.mountpoint-s3", "fuse.s3fs", "fuse.goofys", "fuse.juicefs", "fuse.sshfs"}


class StorageError(ConfigError):
    """runs_dir cannot work on this cluster; the message says what to do."""


def local_runs_dir(runs_dir: str) -> str:
    """runs_dir as a file-system path: a `file://` URI becomes its path (via pyarrow.fs, as Ray Train
    resolves storage paths); object-store URIs are refused with what to do instead."""
    scheme = urlparse(runs_dir).scheme
    if scheme == "file":
        import pyarrow.fs

        _, path = pyarrow.fs.FileSystem.from_uri(runs_dir)
        return path
    if scheme in OBJECT_STORE_SCHEMES:
        raise StorageError(
            f"runs_dir: {runs_dir} is object storage, but stages read and write the run folder as files "
            "(memory-mapped tokens, appends to the training history, parquet, checkpoints); use a file "
            "system every node mounts at the same path (EFS, FSx for Lustre, which can sit on top of an S3 "
            "bucket, Filestore, NFS; a FUSE bucket mount only if it supports appends) and set runs_dir to "
            "that path, e.g. /mnt/shared/runs (see docs/scaling.md, 'Shared storage')")
    if scheme and len(scheme) > 1:   # "C:" style drive letters are not schemes
        raise StorageError(f"runs_dir: unsupported URI scheme {scheme!r} in {runs_dir}; use a path or file://")
    return runs_dir


def mount_types(mounts_file: str = "/proc/mounts") -> dict[str, str]:
    """{mount point: file system type} from /proc/mounts ({} where there is none)."""
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return {}
    table = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            table[parts[1].replace("\\040", " ")] = parts[2]
    return table


def fs_type(path: str | Path, mounts: dict[str, str] | None = None) -> str | None:
    """Type of the file system holding `path`: the longest mount point that contains it."""
    mounts = mount_types() if mounts is None else mounts
    target = os.path.realpath(path)
    best = None
    for point in mounts:
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best)):
            best = point
    return mounts.get(best) if best is not None else None


def is_shared(path: str | Path, shared_mounts: list[str], mounts: dict[str, str] | None = None) -> bool:
    """Under a configured shared mount, or on a network file system."""
    target = os.path.realpath(path)
    for mount in shared_mounts:
        root = os.path.realpath(mount)
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return True
    return fs_type(target, mounts) in NETWORK_FS


def check_shared_runs_dir(runs_dir: str, shared_mounts: list[str], n_nodes: int,
                          mounts: dict[str, str] | None = None) -> None:
    """StorageError when a Ray cluster of several nodes would write a run to a node-local folder."""
    if n_nodes <= 1 or is_shared(runs_dir, shared_mounts, mounts):
        return
    raise StorageError(
        f"runs_dir: {runs_dir} ({os.path.realpath(runs_dir)}) is on this node's local disk, but the Ray "
        f"cluster has {n_nodes} nodes, whose tasks would write parts of the run where the others cannot "
        "read them; set runs_dir to a file system every node mounts at the same path (EFS, FSx, "
        "Filestore, NFS, a FUSE-mounted bucket) and, if /proc/mounts does not show it as one, list the "
        "mount in shared_mounts (e.g. --set runs_dir=/mnt/shared/runs --set shared_mounts=[/mnt/shared])")


def check_cluster_storage(runs_dir: str, shared_mounts: list[str]) -> None:
    """check_shared_runs_dir against the nodes of the connected Ray (alive ones)."""
    import ray

    if ray.is_initialized():
        check_shared_runs_dir(runs_dir, shared_mounts, sum(1 for n in ray.nodes() if n.get("Alive")))


def local_model_dir(checkpoint, dest: str | Path) -> Path:
    """A Ray Train checkpoint's `model/` folder on this machine: in place when the checkpoint is on
    a local (or mounted) file system, else copied from its storage (s3://, gs://) into `dest`."""
    import shutil

    import pyarrow.fs

    fs = checkpoint.filesystem
    if fs is None or isinstance(fs, pyarrow.fs.LocalFileSystem):
        return Path(checkpoint.path) / "model"
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    pyarrow.fs.copy_files(f"{checkpoint.path.rstrip('/')}/model", str(dest), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return dest
