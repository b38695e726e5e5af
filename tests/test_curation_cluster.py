"""Curation on a real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head
and two worker nodes, each its own raylet and object store), driven by `bespoke curate` in a
subprocess, as a user would under `ray job submit`:

(a) the driver is killed (SIGKILL) mid-run and the same command is run again: the output equals
    an uninterrupted run's, and the rerun redid only the parts that had no marker;
(b) a worker node is killed mid-run: Ray Data retries its tasks on the other node and the output
    equals an uninterrupted run's.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_curation_cluster.py -q   (about 2-3 minutes)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.curation import CurateConfig, build_demo_warc, run_curation

pytestmark = pytest.mark.slow
SETTINGS = {"val_fraction": 0.2, "seed": 7}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head without CPUs (it runs no tasks, as the project's cluster.yaml head) and two
    one-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 0, "object_store_memory": 150 << 20, "dashboard_port": None})
    workers = [c.add_node(num_cpus=1, object_store_memory=150 << 20) for _ in range(2)]
    c.wait_for_nodes()
    _point_internal_kv_at_this_driver()
    yield {"cluster": c, "workers": workers}
    c.shutdown()
    _point_internal_kv_at_this_driver()


def _point_internal_kv_at_this_driver():
    """An in-process Cluster head takes over Ray's process-wide internal KV client (node.py), and
    Cluster.shutdown() sets it to None; the session's own Ray (ray_session) needs it back, or Tune and
    anything else calling internal_kv in later tests fails on a None client."""
    import ray
    from ray.experimental import internal_kv

    if ray.is_initialized():
        internal_kv._initialize_internal_kv(ray._private.worker.global_worker.gcs_client)


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory, curated_outputs):
    """The demo corpus and its curation by an uninterrupted run on the session's Ray."""
    root = tmp_path_factory.mktemp("cluster_curate")
    build_demo_warc(str(root / "demo.warc.gz"), seed=3, n_modules=24)
    run_curation(CurateConfig(**SETTINGS), [str(root / "demo.warc.gz")], str(root / "ref"), progress=lambda s: None)
    return {"root": root, "warc": str(root / "demo.warc.gz"), "ref": curated_outputs(root / "ref"),
            "outputs": curated_outputs}


def _command(corpus, out) -> list[str]:
    sets = [f"curate.{k}={v}" for k, v in SETTINGS.items()]
    sets += [f"runs_dir={corpus['root'] / 'runs'}", f"shared_mounts=[{corpus['root']}]"]
    return [sys.executable, "-m", "pipelines.cli", "curate", "--input", corpus["warc"], "--output", str(out),
            *[a for s in sets for a in ("--set", s)]]


def _start(cluster, corpus, out) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": cluster["cluster"].address, "RAY_AUTH_MODE": "disabled"}
    log = open(str(out) + ".log", "ab")
    return subprocess.Popen(_command(corpus, out), env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wait_for_markers(proc, out, at_least: int, timeout: float = 240) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = sorted(p.name for p in (out / "parts").glob("*.done.json")) if (out / "parts").is_dir() else []
        if len(done) >= at_least:
            return done
        assert proc.poll() is None, f"driver ended early: {open(str(out) + '.log').read()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} part markers after {timeout} s")


def _finish(proc, out, timeout: float = 300) -> dict:
    assert proc.wait(timeout=timeout) == 0, open(str(out) + ".log").read()[-4000:]
    return json.loads((out / "report.json").read_text())


def test_driver_killed_mid_run_then_same_command_finishes_it(cluster, corpus):
    out = corpus["root"] / "driver_killed"
    proc = _start(cluster, corpus, out)
    _wait_for_markers(proc, out, at_least=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)   # the dead job's tasks are cancelled by Ray; a late one could still write a marker
    finished = {p.name: json.loads(p.read_text())["data"] for p in (out / "parts").glob("*.done.json")}
    assert 2 <= len(finished) < 16, "the kill must land inside the per-document phase"
    assert not (out / "report.json").exists()

    report = _finish(_start(cluster, corpus, out), out)
    assert report["parts_skipped"] == len(finished)
    assert "resuming an earlier run" in open(str(out) + ".log").read()
    again = {p: json.loads((out / "parts" / p).read_text())["data"] for p in finished}
    assert again == finished   # finished parts were not redone
    assert corpus["outputs"](out) == corpus["ref"]


def test_worker_node_killed_mid_run_gives_the_same_output(cluster, corpus):
    out = corpus["root"] / "node_killed"
    proc = _start(cluster, corpus, out)
    _wait_for_markers(proc, out, at_least=1)
    cluster["cluster"].remove_node(cluster["workers"][0], allow_graceful=False)
    report = _finish(proc, out)
    assert report["parts_skipped"] == 0 and report["parts_total"] == 16
    assert corpus["outputs"](out) == corpus["ref"]
