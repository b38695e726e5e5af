"""Node loss (issue 19): a run that loses a node never hangs. On a multi-node Ray cluster on this
machine (`ray.cluster_utils.Cluster`: a head with no CPUs, two 1-CPU worker nodes, one Ray Train
worker each), a worker node is killed after the first checkpoint:

- elastic (train.min_workers=1): the run continues from the checkpoint on the one worker left,
  with twice the micro-batches per step, and ends within 2% of the uninterrupted run's val loss;
- fixed (min_workers null), no replacement: it stops within train.worker_start_timeout_s with an
  error naming what it asked for and what the cluster has;
- fixed, a replacement node added: it resumes on 2 workers and ends at the same loss.

Each run is its own driver process (RAY_ADDRESS = the cluster), so the session's Ray is untouched.
    timeout 900 python -m pytest -q tests/test_training_node_loss.py
"""
from __future__ import annotations

import glob
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 20          # train.worker_start_timeout_s of the fixed runs

DRIVER = r"""
import dataclasses, json, sys, time
import ray
from modeling.config import ModelConfig
from pipelines.training import TrainConfig, run_pretrain
root, name, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ray.init(address="auto", logging_level="ERROR")
model = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
cfg = TrainConfig(seq_len=64, batch_size=8, max_steps=60, warmup_steps=4, eval_every=10, log_every=10,
                  eval_tokens=4096, lr=3e-3, num_workers=2, max_failures=2, keep_checkpoints=2,
                  data_order="random", **extra)
t0 = time.monotonic()
try:
    r = run_pretrain(model, cfg, f"{root}/tokens", f"{root}/tokenizer", f"{root}/out", name=name)
except Exception as exc:
    print("RESULT " + json.dumps({"error": f"{type(exc).__name__}: {exc}", "s": time.monotonic() - t0}), flush=True)
    sys.exit(3)
print("RESULT " + json.dumps({"metrics": r.metrics, "history": r.history_path, "checkpoint": r.checkpoint_dir, "s": time.monotonic() - t0}), flush=True)
"""


def _point_internal_kv_at_this_driver():
    """An in-process Cluster head takes over Ray's process-wide internal KV client and
    Cluster.shutdown() sets it to None; the session's own Ray needs it back (as in
    tests/test_curation_cluster.py)."""
    import ray
    from ray.experimental import internal_kv

    if ray.is_initialized():
        internal_kv._initialize_internal_kv(ray._private.worker.global_worker.gcs_client)


@pytest.fixture(scope="module")
def tokens_root(tmp_path_factory):
    from modeling.tokenizer import Tokenizer
    from pipelines.tokenize import write_packed_tokens
    import collections, json as json_mod, pathlib, re, textwrap  # noqa: E401  real prose

    docs = []
    for module in (collections, json_mod, os, pathlib, re, textwrap):
        docs.append(inspect.getdoc(module) or "")
        docs += [inspect.getdoc(o) for _, o in inspect.getmembers(module)
                 if (inspect.isfunction(o) or inspect.isclass(o)) and inspect.getdoc(o)]
    text = "\n\n".join(docs)
    root = tmp_path_factory.mktemp("node_loss")
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=512)
    tok.save(root / "tokenizer")
    ids = np.array([i for doc in docs for i in tok.encode(doc) + [tok.eos_id]], dtype=np.uint16)
    split = int(len(ids) * 0.9)
    write_packed_tokens(root / "tokens", tok, ids[:split], ids[split:])
    return root


@pytest.fixture(scope="module")
def cluster(tokens_root):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 0, "object_store_memory": 150 << 20, "dashboard_port": None})
    workers = [c.add_node(num_cpus=1, object_store_memory=150 << 20) for _ in range(2)]
    c.wait_for_nodes()
    _point_internal_kv_at_this_driver()
    yield {"cluster": c, "workers": workers}
    c.shutdown()
    _point_internal_kv_at_this_driver()


def _start(cluster, root, name, **extra):
    env = {**os.environ, "RAY_ADDRESS": cluster["cluster"].address, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(root), name, json.dumps(extra)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout) -> tuple[dict, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the run hung (> {timeout} s):\n{out[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"driver exited {proc.returncode} without a result:\n{out[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):]), out


def _kill_a_node_after_the_first_checkpoint(cluster, root, name, proc, replace: bool = False):
    deadline = time.monotonic() + 240
    while not glob.glob(str(root / "out" / name / "checkpoint_*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.5)
    # Ray Train's controller learns of a reported checkpoint by polling (every 2 s): kill a little later,
    # so the restart resumes from it rather than from the start.
    time.sleep(5)
    node = cluster["workers"].pop()
    cluster["cluster"].remove_node(node)
    if replace:
        cluster["workers"].append(cluster["cluster"].add_node(num_cpus=1, object_store_memory=150 << 20))
    return time.monotonic()


def _world_size(result) -> int:
    from pipelines.training.checkpointing import verify_checkpoint

    return verify_checkpoint(result["checkpoint"])["world_size"]


def _history(result) -> list[dict]:
    return [json.loads(line) for line in Path(result["history"]).read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(cluster, tokens_root):
    result, out = _finish(_start(cluster, tokens_root, "ref"), timeout=300)
    assert "metrics" in result, out[-3000:]
    return result


def test_fixed_run_with_a_replacement_node_resumes_on_two_workers_to_the_same_loss(cluster, tokens_root, reference):
    proc = _start(cluster, tokens_root, "replaced", worker_start_timeout_s=120)
    _kill_a_node_after_the_first_checkpoint(cluster, tokens_root, "replaced", proc, replace=True)
    result, out = _finish(proc, timeout=400)
    assert "metrics" in result, out[-3000:]
    assert result["metrics"]["step"] == 60
    assert _world_size(result) == 2
    assert sorted({h["step"] for h in _history(result)}) == [h["step"] for h in _history(reference)]
    assert result["metrics"]["val_loss"] == pytest.approx(reference["metrics"]["val_loss"], rel=0.02)
    print(f"replacement: val_loss {result['metrics']['val_loss']:.4f} vs uninterrupted "
          f"{reference['metrics']['val_loss']:.4f}")


def test_elastic_run_continues_on_the_worker_left_to_the_same_loss(cluster, tokens_root, reference):
    proc = _start(cluster, tokens_root, "elastic", min_workers=1, worker_start_timeout_s=120)
    _kill_a_node_after_the_first_checkpoint(cluster, tokens_root, "elastic", proc)
    result, out = _finish(proc, timeout=400)
    assert "metrics" in result, out[-3000:]
    assert result["metrics"]["step"] == 60
    assert _world_size(result) == 1                                         # finished on the worker left
    assert sorted({h["step"] for h in _history(result)}) == [h["step"] for h in _history(reference)]
    assert result["metrics"]["tokens"] == reference["metrics"]["tokens"]      # tokens per step kept
    assert result["metrics"]["val_loss"] == pytest.approx(reference["metrics"]["val_loss"], rel=0.02)
    print(f"elastic: val_loss {result['metrics']['val_loss']:.4f} vs uninterrupted "
          f"{reference['metrics']['val_loss']:.4f}")
    cluster["workers"].append(cluster["cluster"].add_node(num_cpus=1, object_store_memory=150 << 20))


def test_fixed_run_without_a_replacement_stops_within_the_timeout_naming_the_resources(cluster, tokens_root):
    proc = _start(cluster, tokens_root, "lost", worker_start_timeout_s=TIMEOUT_S)
    killed_at = _kill_a_node_after_the_first_checkpoint(cluster, tokens_root, "lost", proc)
    result, out = _finish(proc, timeout=TIMEOUT_S + 180)
    waited = time.monotonic() - killed_at
    assert proc.returncode == 3 and "error" in result, out[-3000:]
    assert result["error"].startswith("WorkersUnavailable: could not start 2 Ray Train workers x {CPU: 1}")
    assert f"train.worker_start_timeout_s={TIMEOUT_S} s" in result["error"]
    assert "set train.min_workers" in result["error"]
    assert "the cluster has 2 alive nodes: {CPU 0}, {CPU 1}" in result["error"], result["error"]
    assert waited < TIMEOUT_S + 120, f"stopped {waited:.0f} s after the node loss"
    print(f"lost: stopped {waited:.0f} s after the node loss: {result['error']}")
