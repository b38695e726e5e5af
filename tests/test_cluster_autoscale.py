"""Autoscaling with Ray's fake multi-node provider: training workers asking for GPUs make the
autoscaler add a node of cluster.yaml's GPU type, and the node goes away again once idle.

The node types, their resources and the driver resource come from cluster.yaml itself (worker
counts capped for one machine); the fake nodes are extra raylets on this machine, so the test stops
at placing the workers' bundles (no CUDA here). Its head has its own ports and temp dir and is
stopped by killing only its own processes. Skips if the fake provider cannot start.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cluster.local_head import LocalHead
from cluster.resources import DRIVER, gpu_nodes_needed, stage_demand, train_worker_resources
from pipelines.run_config import load_run_config

REPO = Path(__file__).resolve().parent.parent

# The driver: reserve the bundles Ray Train would for 2 GPU workers, report the nodes, release them,
# and report when the GPU node is gone again. One JSON line per event.
DRIVER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundles = json.loads(sys.argv[2])
    ray.init(address=sys.argv[1], log_to_driver=False)
    def gpu_nodes():
        return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0]
    say = lambda **kw: print(json.dumps(kw), flush=True)
    say(event="start", gpu_nodes=len(gpu_nodes()))
    t = time.monotonic()
    pg = placement_group(bundles, strategy="PACK")
    ray.get(pg.ready(), timeout=90)
    say(event="placed", seconds=round(time.monotonic() - t, 1),
        gpu_nodes=[n["Resources"] for n in gpu_nodes()])
    remove_placement_group(pg)
    t = time.monotonic()
    while gpu_nodes() and time.monotonic() - t < 90:
        time.sleep(1)
    say(event="released", seconds=round(time.monotonic() - t, 1), gpu_nodes=len(gpu_nodes()))
""")


def fake_cluster_config(cluster_yaml: Path, gcs_address: str, head_cpus: int = 1) -> dict:
    """cluster.yaml's node types on the fake_multinode provider (NOTES.md's recipe). The provider
    names the head's type `ray.head.default` and assumes GCS port 6379 unless told otherwise."""
    real = yaml.safe_load(cluster_yaml.read_text())
    head = "ray.head.default"
    types = {}
    for name, t in real["available_node_types"].items():
        resources = dict(t["resources"])
        if name == real["head_node_type"]:
            name, resources["CPU"] = head, head_cpus
        types[name] = {"resources": resources, "node_config": {}, "min_workers": 0,
                       "max_workers": 0 if name == head else 1}
    return {"cluster_name": "fake-bespokelm", "max_workers": 2, "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1, "head_node_type": head, "available_node_types": types,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "gcs_address": gcs_address,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": []}


def test_stage_demand_matches_the_node_types():
    cfg = load_run_config(None, ["train.use_gpu=true", "train.num_workers=16", "train.cpus_per_worker=8"])
    bundles = stage_demand("pretrain", cfg)
    assert bundles == [{"CPU": 8.0, "GPU": 1.0}] * 16 and gpu_nodes_needed(bundles) == 2
    assert "GPU" not in train_worker_resources(load_run_config().train)    # CPU training stays on CPUs
    assert stage_demand("curate", cfg) == [{"CPU": 1}]
    real = yaml.safe_load((REPO / "cluster.yaml").read_text())
    gpu_type = next(t for t in real["available_node_types"].values() if t["resources"].get("GPU"))
    assert gpu_type["resources"]["CPU"] >= 8 * 8                          # 8 such workers fit one node


@pytest.mark.parametrize("use_gpu", [False, True])
def test_trainer_asks_for_what_resources_declares(tmp_path, use_gpu):
    from pipelines.training.trainer import build_trainer

    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 512}))
    cfg = load_run_config(None, [f"train.use_gpu={str(use_gpu).lower()}", "train.cpus_per_worker=4"])
    trainer = build_trainer(cfg.model, cfg.train, tmp_path, tmp_path, tmp_path / "out")
    per_worker = {k: float(v) for k, v in trainer.scaling_config._resources_per_worker_not_none.items()}
    assert per_worker == train_worker_resources(cfg.train)


@pytest.mark.slow
def test_gpu_request_adds_a_gpu_node_that_goes_away_when_idle(tmp_path):
    config = tmp_path / "fake.yaml"
    head = LocalHead(num_cpus=1, resources={DRIVER: 8},
                     env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
                     extra_args=[f"--autoscaling-config={config}"])
    config.write_text(yaml.safe_dump(fake_cluster_config(REPO / "cluster.yaml", head.address)))
    try:
        head.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.skip(f"the fake multi-node provider cannot start here: {str(exc)[:300]}")
    try:
        bundles = [train_worker_resources(load_run_config(None, ["train.use_gpu=true"]).train)] * 2
        proc = subprocess.run([sys.executable, "-c", DRIVER_SCRIPT, head.address, json.dumps(bundles)],
                              capture_output=True, text=True, timeout=240,
                              env={**head.env, "RAY_ADDRESS": head.address})
    finally:
        head.stop()
    events = {e["event"]: e for e in map(json.loads, (l for l in proc.stdout.splitlines() if l.startswith("{")))}
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert events["start"]["gpu_nodes"] == 0
    placed = events["placed"]["gpu_nodes"]
    assert len(placed) == 1 and placed[0]["GPU"] == 8            # one node of the gpu_8x type
    assert events["released"]["gpu_nodes"] == 0                  # gone again after idle_timeout
    print(f"GPU node added in {events['placed']['seconds']} s, removed {events['released']['seconds']} s after")
