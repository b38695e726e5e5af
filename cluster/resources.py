"""What each stage asks the cluster for, so the autoscaler adds the right node type.

    entrypoint_resources()          {"driver": 1}: job drivers run on the on-demand head, never on spot
    curation_actor_resources(cfg)   {"CPU": 1} per Ray Data task/actor: adds cpu_spot nodes
    train_worker_resources(cfg)     {"CPU": n, "GPU": 1} per Ray Train worker: adds gpu_8x nodes
    stage_demand(stage, cfg)        the bundles a whole stage asks for, as the autoscaler sees them

The node types in ../cluster.yaml carry these resources: the head has `driver`, cpu_spot only CPUs,
gpu_8x 8 GPUs. A request the head cannot hold (a GPU, or more CPUs than it has) makes the
autoscaler launch a worker type that can, and `idle_timeout_minutes` later it goes away again.
"""
from __future__ import annotations

DRIVER = "driver"          # custom resource on on-demand nodes only (the head); see cluster.yaml
GPUS_PER_NODE = 8          # the gpu_8x node type


def entrypoint_resources() -> dict[str, float]:
    """Resources a job's driver reserves: one `driver` slot, which only the head has.

    Spot nodes can vanish at any moment; a driver that dies takes its whole job with it, while a
    lost worker is retried by Ray Data or restarted from a checkpoint by Ray Train.
    """
    return {DRIVER: 1}


def curation_actor_resources(num_cpus: float = 1) -> dict[str, float]:
    """One Ray Data map task or actor of the curation pipeline: CPU only (trafilatura, MinHash)."""
    return {"CPU": num_cpus}


def train_worker_resources(train_cfg) -> dict[str, float]:
    """One Ray Train worker: its CPUs (data loading, torch threads), plus one GPU with use_gpu.

    Matches `ScalingConfig(num_workers, use_gpu, resources_per_worker={"CPU": cpus_per_worker})`
    in pipelines/training/trainer.py, where use_gpu adds {"GPU": 1} to every worker.
    """
    bundle = {"CPU": float(train_cfg.cpus_per_worker)}
    if train_cfg.use_gpu:
        bundle["GPU"] = 1.0
    return bundle


def stage_demand(stage: str, cfg) -> list[dict[str, float]]:
    """The resource bundles one stage asks for at once (a RunConfig `cfg`); [] for driver-only work."""
    if stage in ("pretrain",):
        return [train_worker_resources(cfg.train) for _ in range(cfg.train.num_workers)]
    if stage == "tune":
        per_trial = [train_worker_resources(cfg.train) for _ in range(cfg.tune.workers_per_trial)]
        return per_trial * cfg.tune.max_concurrent_trials
    if stage == "eval":
        bundle = {"CPU": float(cfg.eval.num_cpus)}
        if cfg.eval.num_gpus:
            bundle["GPU"] = float(cfg.eval.num_gpus)
        return [bundle]
    if stage in ("curate", "tokenize"):
        return [curation_actor_resources()]
    return []


def gpu_nodes_needed(bundles: list[dict[str, float]]) -> int:
    """How many gpu_8x nodes a list of bundles fills (ceil of total GPUs / 8)."""
    gpus = sum(b.get("GPU", 0) for b in bundles)
    return int(-(-gpus // GPUS_PER_NODE))
