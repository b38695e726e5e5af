"""cluster/: every shipped cluster YAML validates offline against Ray's schema and keeps the
layout the stages rely on (CPU and 8-GPU worker types, a driver resource, a private dashboard);
broken ones are rejected."""
from pathlib import Path

import pytest
import yaml

from cluster.cluster_config import ClusterConfigError, check_cluster_yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAMLS = [REPO / "cluster.yaml", *sorted((REPO / "cluster").glob("**/*.yaml"))]


def test_there_is_an_aws_default_and_a_gcp_variant():
    providers = {yaml.safe_load(p.read_text())["provider"]["type"] for p in CLUSTER_YAMLS}
    assert yaml.safe_load((REPO / "cluster.yaml").read_text())["provider"]["type"] == "aws"
    assert {"aws", "gcp"} <= providers


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_cluster_yaml_is_valid(path):
    cfg = check_cluster_yaml(path)
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert 0 < cfg["idle_timeout_minutes"] <= 30
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) == 8]
    cpu = [t for t in workers.values() if "GPU" not in t["resources"] and t["resources"].get("CPU", 0) >= 32]
    assert gpu and cpu, "needs an 8-GPU worker type for training and a CPU worker type for curation"
    for t in workers.values():
        assert t["min_workers"] == 0 < t["max_workers"], "workers autoscale from zero"
    assert types[cfg["head_node_type"]]["resources"].get("driver", 0) > 0, "job drivers go to the head"
    assert all("driver" not in t["resources"] for t in workers.values())


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_dashboard_is_private_and_token_auth_is_on(path):
    cfg = yaml.safe_load(path.read_text())
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    for cmd in (head, " ".join(cfg["worker_start_ray_commands"])):
        assert "RAY_AUTH_MODE=token" in cmd
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    assert any("pip install" in c and "bespokelm" in c for c in cfg["setup_commands"])


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(head_node_type="nonexistent"),
    lambda c: c.update(not_a_ray_key=1),
    lambda c: c["available_node_types"]["cpu_spot"].update(resources={"CPU": 1.5}),
    lambda c: c["available_node_types"]["gpu_8x"].update(not_a_node_key=1),
])
def test_broken_cluster_yaml_is_rejected(tmp_path, mutate):
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    mutate(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ClusterConfigError):
        check_cluster_yaml(bad)
