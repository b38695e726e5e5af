"""cluster/resources.py is what the stages pass to Ray: Ray Train's ScalingConfig, the evaluation
Ray tasks, curation's Ray Data map tasks; and a stage that asks for what a fixed-size Ray can
never give fails at once with a clear message (exit 2) instead of waiting forever.

    python -m pytest tests/test_cluster_resources.py -q

No GPU is needed: the GPU requests are checked as built, not run.
"""
from __future__ import annotations

import json

import pytest

from cluster.resources import (ResourceError, curation_actor_resources, eval_task_options, preflight,
                               stage_demand, train_worker_resources, unschedulable)
from pipelines.evaluation import EvalConfig
from pipelines.run_config import load_run_config


def test_training_workers_ask_for_what_the_stage_declares(tmp_path):
    """The TorchTrainer the pretrain stage builds requests train_worker_resources per worker."""
    from pipelines.training.trainer import build_trainer

    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "meta.json").write_text(json.dumps({"vocab_size": 300}))
    cfg = load_run_config(None, ["train.use_gpu=true", "train.num_workers=2", "train.cpus_per_worker=3"])
    trainer = build_trainer(cfg.model, cfg.train, tmp_path / "tokens", tmp_path / "tokenizer", tmp_path / "out")
    scaling = trainer.scaling_config
    assert train_worker_resources(cfg.train) == {"CPU": 3.0, "GPU": 1.0}
    assert scaling.num_workers == 2 and scaling.use_gpu
    assert scaling._resources_per_worker_not_none == train_worker_resources(cfg.train)
    assert stage_demand("pretrain", cfg) == [{"CPU": 3.0, "GPU": 1.0}] * 2
    cpu = load_run_config(None, ["train.cpus_per_worker=2"])
    assert build_trainer(cpu.model, cpu.train, tmp_path / "tokens", tmp_path / "tokenizer",
                         tmp_path / "out").scaling_config._resources_per_worker_not_none == {"CPU": 2.0}


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
    from pipelines.curation.steps import Step

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
    monkeypatch.setattr(ray.data.Dataset, "materialize", stop)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "hello world " * 20}) + "\n")
    with pytest.raises(Stop):
        pipeline._per_document(CurateConfig(), [str(tmp_path / "docs.jsonl")], 1, lambda _: None)
    steps = [kw for fn, kw in calls if isinstance(fn, Step)]
    assert steps and all(kw["num_cpus"] == curation_actor_resources()["CPU"] for kw in steps)


def test_unschedulable_finds_the_bundle_no_node_holds():
    nodes = [{"CPU": 8.0, "driver": 8.0}, {"CPU": 192.0, "GPU": 8.0}]
    assert unschedulable([{"CPU": 16.0, "GPU": 1.0}] * 8, nodes) is None
    assert unschedulable([{"CPU": 1.0}, {"CPU": 4.0, "GPU": 9.0}], nodes) == {"CPU": 4.0, "GPU": 9.0}
    assert unschedulable([{"CPU": 1.0, "GPU": 0.0}], [{"CPU": 2.0}]) is None      # a zero ask needs nothing


def test_a_gpu_stage_on_a_cpu_only_embedded_ray_fails_at_once(ray_session, tmp_path, capsys):
    from pipelines.cli import main

    said: list[str] = []
    cpu = load_run_config(None, ["train.num_workers=2"])  # (2 is also the default)
    assert preflight("pretrain", cpu, said.append, fixed_size=True) == [{"CPU": 1.0}] * 2
    assert said == ["pretrain: asks Ray for 2 x {CPU 1}"]
    gpu = load_run_config(None, ["train.use_gpu=true"])
    with pytest.raises(ResourceError, match=r"^pretrain: a task asks for \{'CPU': 1.0, 'GPU': 1.0\} but no node"):
        preflight("pretrain", gpu, said.append, fixed_size=True)
    # A cluster that can add nodes (RAY_ADDRESS) is left to its autoscaler.
    assert preflight("pretrain", gpu, said.append, fixed_size=False) == [{"CPU": 1.0, "GPU": 1.0}] * 2
    # The CLI: exit 2 and one line, before any work starts.
    rc = main(["pretrain", "--set", f"runs_dir={tmp_path}", "--set", "train.use_gpu=true"])
    assert rc == 2 and "config error: pretrain: a task asks for" in capsys.readouterr().err
