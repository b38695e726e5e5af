"""cluster/resources.py is what the stages pass to Ray: the evaluation Ray tasks and curation's Ray
Data map tasks here (Ray Train's ScalingConfig in tests/test_cluster_autoscale.py); and a stage
that asks for what a fixed-size Ray can never give fails at once with a clear message (exit 2)
instead of waiting forever.

    python -m pytest tests/test_cluster_resources.py -q

No GPU is needed: the GPU requests are checked as built, not run.
"""
from __future__ import annotations

import json

import pytest

from cluster.resources import (ResourceError, curation_actor_resources, eval_task_options, preflight,
                               unschedulable)
from pipelines.evaluation import EvalConfig
from pipelines.run_config import load_run_config


def test_evaluation_tasks_get_the_declared_resources(ray_session):
    from pipelines.evaluation.jobs import gather, submit

    def assigned(cfg):
        import ray

        return ray.get_runtime_context().get_assigned_resources()

    got = gather({"job": submit(assigned, EvalConfig(num_cpus=1))})["job"]
    assert got == {"CPU": 1.0}
    assert eval_task_options(EvalConfig(num_cpus=4, num_gpus=1)) == {"num_cpus": 4.0, "num_gpus": 1.0}


def test_curation_map_tasks_ask_for_the_declared_cpus(tmp_path, monkeypatch, ray_session):
    """Every per-document step is a map_batches call with curation_task_args (the plan is built,
    not run: materialize stops it)."""
    import ray.data

    from pipelines.curation import CurateConfig
    from pipelines.curation import pipeline
    from pipelines.curation.parts import plan_parts

    calls = []
    original = ray.data.Dataset.map_batches

    def record(self, fn, *args, **kwargs):
        calls.append((fn, kwargs))
        return original(self, fn, *args, **kwargs)

    class Stop(Exception):
        pass

    def stop(self, *a, **k):
        raise Stop

    monkeypatch.setattr(ray.data.Dataset, "map_batches", record)
    monkeypatch.setattr(ray.data.Dataset, "iter_rows", stop)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "hello world " * 20}) + "\n")
    with pytest.raises(Stop):
        pipeline._per_document(CurateConfig(), plan_parts([str(tmp_path / "docs.jsonl")]), str(tmp_path / "out"),
                               lambda _: None)
    steps = [kw for fn, kw in calls if isinstance(fn, pipeline._PartTask)]
    assert steps and all(kw["num_cpus"] == curation_actor_resources()["CPU"] for kw in steps)


def test_unschedulable_finds_the_bundle_no_node_holds():
    nodes = [{"CPU": 8.0, "driver": 8.0}, {"CPU": 192.0, "GPU": 8.0}]
    assert unschedulable([{"CPU": 16.0, "GPU": 1.0}] * 8, nodes) is None
    assert unschedulable([{"CPU": 1.0}, {"CPU": 4.0, "GPU": 9.0}], nodes) == {"CPU": 4.0, "GPU": 9.0}
    assert unschedulable([{"CPU": 1.0, "GPU": 0.0}], [{"CPU": 2.0}]) is None      # a zero ask needs nothing


def test_a_gpu_stage_on_a_cpu_only_embedded_ray_fails_at_once(monkeypatch, tmp_path, capsys):
    """Against a stand-in embedded Ray of one 2-CPU node (ray.nodes() as Ray reports it)."""
    import ray

    import cluster.ray_env
    from pipelines.cli import main

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0, "memory": 1e9}}])
    monkeypatch.setattr(cluster.ray_env, "_EMBEDDED", True)
    said: list[str] = []
    cpu = load_run_config(None, ["train.num_workers=2"])  # (2 is also the default)
    assert preflight("pretrain", cpu, said.append) == [{"CPU": 1.0}] * 2
    assert said == ["pretrain: asks Ray for 2 x {CPU 1}"]
    gpu = load_run_config(None, ["train.use_gpu=true"])
    with pytest.raises(ResourceError, match=r"^pretrain: a task asks for \{'CPU': 1.0, 'GPU': 1.0\} but no node"):
        preflight("pretrain", gpu, said.append)
    with pytest.raises(ResourceError, match=r"^eval: a task asks for \{'CPU': 4.0\}"):
        preflight("eval", load_run_config(None, ["eval.num_cpus=4"]), said.append)
    # A cluster that can add nodes (RAY_ADDRESS) is left to its autoscaler.
    monkeypatch.setattr(cluster.ray_env, "_EMBEDDED", False)
    assert preflight("pretrain", gpu, said.append) == [{"CPU": 1.0, "GPU": 1.0}] * 2
    # The CLI: exit 2 and one line, before any work starts.
    monkeypatch.setattr(cluster.ray_env, "_EMBEDDED", True)
    rc = main(["pretrain", "--set", f"runs_dir={tmp_path}", "--set", "train.use_gpu=true"])
    assert rc == 2 and "config error: pretrain: a task asks for" in capsys.readouterr().err
