"""cluster/storage.py: runs_dir as a path or file:// URI, object-store URIs refused with what to do,
and a node-local runs_dir refused on a Ray cluster of several nodes (before any stage work).

    python -m pytest tests/test_cluster_storage.py -q

Offline: the Ray cluster is a stand-in list of nodes, and the mount table a stand-in /proc/mounts.
"""
from __future__ import annotations


import pytest
import ray

from cluster.resources import preflight
from cluster.storage import StorageError, check_shared_runs_dir, fs_type, is_shared, local_runs_dir, mount_types
from pipelines.config import ConfigError
from pipelines.run_config import load_run_config

MOUNTS = {"/": "overlay", "/mnt/shared": "nfs4", "/mnt/bucket": "fuse.mountpoint-s3", "/scratch": "ext4"}


def test_runs_dir_takes_paths_and_file_uris_and_refuses_object_stores(tmp_path):
    assert local_runs_dir("runs") == "runs"
    assert local_runs_dir(f"file://{tmp_path}/runs") == f"{tmp_path}/runs"
    cfg = load_run_config(None, [f"runs_dir=file://{tmp_path}/runs"])
    assert cfg.paths.root == tmp_path / "runs" / "demo" and cfg.paths.tokens == tmp_path / "runs/demo/tokens"
    for uri in ("s3://bucket/runs", "gs://bucket/runs"):
        with pytest.raises(StorageError, match=f"^runs_dir: {uri} is object storage.*a file system every node mounts"):
            local_runs_dir(uri)
    with pytest.raises(ConfigError, match="^runs_dir: s3://b/r is object storage"):
        load_run_config(None, ["runs_dir=s3://b/r"])
    with pytest.raises(StorageError, match="unsupported URI scheme 'ftp'"):
        local_runs_dir("ftp://host/runs")


def test_shared_means_a_configured_mount_or_a_network_file_system(tmp_path):
    assert fs_type("/mnt/shared/runs/demo", MOUNTS) == "nfs4"
    assert fs_type("/scratch/runs", MOUNTS) == "ext4" and fs_type("/home/me", MOUNTS) == "overlay"
    assert is_shared("/mnt/shared/runs", [], MOUNTS) and is_shared("/mnt/bucket/r", [], MOUNTS)
    assert not is_shared("/scratch/runs", [], MOUNTS)
    assert is_shared("/scratch/runs", ["/scratch"], MOUNTS)          # the user says it is shared
    assert not is_shared("/scratchpad/runs", ["/scratch"], MOUNTS)   # a prefix is not a parent
    assert "/" in mount_types()                                       # this machine's real table parses


def test_a_node_local_runs_dir_on_several_nodes_is_refused():
    check_shared_runs_dir("/scratch/runs", [], n_nodes=1, mounts=MOUNTS)       # one node: anything goes
    check_shared_runs_dir("/mnt/shared/runs", [], n_nodes=4, mounts=MOUNTS)
    with pytest.raises(StorageError, match=r"^runs_dir: /scratch/runs .*the Ray cluster has 4 nodes"):
        check_shared_runs_dir("/scratch/runs", [], n_nodes=4, mounts=MOUNTS)


def test_every_stage_checks_storage_before_it_starts(monkeypatch, tmp_path):
    """preflight (run by `bespoke <stage>` and `bespoke run`) against a stand-in 3-node cluster."""
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}}] * 3 + [{"Alive": False, "Resources": {}}]
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    local = load_run_config(None, [f"runs_dir={tmp_path}/runs"])
    for stage in ("curate", "tokenize", "pretrain", "eval", "generate"):
        with pytest.raises(StorageError, match="the Ray cluster has 3 nodes"):
            preflight(stage, local, lambda _: None, fixed_size=False)
    shared = load_run_config(None, [f"runs_dir={tmp_path}/runs", f"shared_mounts=[{tmp_path}]"])
    said: list[str] = []
    assert preflight("pretrain", shared, said.append, fixed_size=False) == [{"CPU": 1.0}] * 2
    assert said == ["pretrain: asks Ray for 2 x {CPU 1}"]
    monkeypatch.setattr(ray, "nodes", lambda: nodes[:1])                  # one node: a local folder is fine
    preflight("pretrain", local, said.append, fixed_size=False)


def test_pretraining_checkpoints_can_live_at_a_uri_and_the_best_model_comes_back(tmp_path):
    """train.storage_path goes to Ray Train as given; a checkpoint on a non-local pyarrow file
    system (here a SubTreeFileSystem standing in for s3://) has its model/ copied back."""
    import json

    import pyarrow.fs
    from ray.train import Checkpoint

    from cluster.storage import local_model_dir
    from pipelines.training.trainer import build_trainer

    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "meta.json").write_text(json.dumps({"vocab_size": 300}))
    uri = f"file://{tmp_path}/store"
    cfg = load_run_config(None, [f"train.storage_path={uri}"])
    trainer = build_trainer(cfg.model, cfg.train, tmp_path / "tokens", tmp_path, tmp_path / "out",
                            storage_path=cfg.train.storage_path)
    assert trainer.run_config.storage_path == uri
    default = build_trainer(cfg.model, cfg.train, tmp_path / "tokens", tmp_path, tmp_path / "out")
    assert default.run_config.storage_path == str((tmp_path / "out").resolve())

    model = tmp_path / "remote" / "run" / "checkpoint_000001" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model": {}}')
    (model / "model.safetensors").write_bytes(b"weights")
    remote = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "remote"), pyarrow.fs.LocalFileSystem())
    got = local_model_dir(Checkpoint("run/checkpoint_000001", filesystem=remote), tmp_path / "best_model")
    assert got == tmp_path / "best_model" and (got / "model.safetensors").read_bytes() == b"weights"
    local = Checkpoint(str(model.parent), filesystem=pyarrow.fs.LocalFileSystem())
    assert local_model_dir(local, tmp_path / "unused") == model and not (tmp_path / "unused").exists()
