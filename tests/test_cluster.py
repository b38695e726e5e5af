"""cluster/: the shipped cluster.yaml validates offline against Ray's schema; broken ones do not."""
from pathlib import Path

import pytest
import yaml

from cluster.cluster_config import ClusterConfigError, check_cluster_yaml

REPO = Path(__file__).resolve().parent.parent


def test_shipped_cluster_yaml_is_valid():
    cfg = check_cluster_yaml(REPO / "cluster.yaml")
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert any("gpu" in name for name in cfg["available_node_types"])


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(head_node_type="nonexistent"),
    lambda c: c.update(not_a_ray_key=1),
    lambda c: c["available_node_types"]["cpu_worker"].update(resources={"CPU": 1.5}),
])
def test_broken_cluster_yaml_is_rejected(tmp_path, mutate):
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    mutate(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ClusterConfigError):
        check_cluster_yaml(bad)
