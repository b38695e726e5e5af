"""The embedded Ray starts whatever an earlier cluster left behind, and its workers find it.

    python -m pytest tests/test_embedded_start.py -q

A cluster that died uncleanly leaves `ray_current_cluster` naming a dead address. Here that file
lives in a private Ray temp dir (RAY_TMPDIR), so no other Ray on the machine is touched: a fresh
Python process calls `cluster.connect()`, which must start its own Ray, say so in one line, and
let a worker use Ray's state API with no address (what Ray Train's placement-group cleaner does),
which would otherwise follow the stale file to the dead address.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import ray
from cluster import connect

connect(num_cpus=1)

@ray.remote(num_cpus=0)
def actors_seen_by_a_worker():
    from ray.util.state import list_actors   # no address: RAY_ADDRESS, then ray_current_cluster
    return len(list_actors(limit=10, timeout=30))

print("answer", ray.get(ray.remote(lambda: 41 + 1).remote()))
print("state api from a worker ok", ray.get(actors_seen_by_a_worker.remote()) >= 0)
print("gcs", ray.get_runtime_context().gcs_address)
"""


def test_embedded_start_ignores_a_stale_current_cluster_file():
    # A short private temp dir: Ray's socket paths under it must stay below the 107-byte limit.
    tmp = tempfile.mkdtemp(prefix="bspk", dir="/tmp")
    try:
        ray_dir = Path(tmp, "ray")
        ray_dir.mkdir()
        (ray_dir / "ray_current_cluster").write_text("127.0.0.1:1")     # nothing listens on port 1
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
        text = out.stdout + out.stderr
        assert out.returncode == 0, text
        assert "answer 42" in text
        assert "state api from a worker ok True" in text
        assert "gcs 127.0.0.1:1\n" not in text                                # not the dead address
        said = [line for line in text.splitlines() if "ray_current_cluster is ignored" in line]
        assert len(said) == 1 and str(ray_dir / "ray_current_cluster") in said[0]
        assert "Traceback" not in text
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
