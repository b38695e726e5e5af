"""What each stage asks the cluster for, so the autoscaler adds the right node type.

    entrypoint_resources()          {"driver": 1}: job drivers run on the on-demand head, never on spot
    curation_actor_resources(cfg)   {"CPU": 1} per Ray Data task/actor: adds cpu_spot nodes
    train_worker_resources(cfg)     {"CPU": n, "GPU": 1} per Ray Train worker: adds gpu_8x nodes
    stage_demand(stage, cfg)        the bundles a whole stage asks for, as the autoscaler sees them

What the stages pass to Ray, built here so the declaration and the request cannot drift apart:

    curation_task_args()            map_batches(..., **curation_task_args())     (pipelines/curation)
    train_scaling_config(train_cfg) TorchTrainer(scaling_config=...)             (pipelines/training)
    eval_task_options(eval_cfg)     ray.remote(job).options(**...)               (pipelines/evaluation)
    entrypoint_resources()          JobSubmissionClient.submit_job(entrypoint_resources=...)  (cluster/submit)
    preflight(stage, cfg, say)      before a stage starts: says what it asks for, and on a fixed-size
                                    (embedded) Ray fails at once on a bundle no node can ever hold;
                                    on several nodes, fails on a node-local runs_dir (cluster/storage.py)

The node types in ../cluster.yaml carry these resources: the head has `driver`, cpu_spot only CPUs,
gpu_8x 8 GPUs. A request the head cannot hold (a GPU, or more CPUs than it has) makes the
autoscaler launch a worker type that can, and `idle_timeout_minutes` later it goes away again.
"""
from __future__ import annotations

from pipelines.config import ConfigError

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
        # max_concurrent_trials None = as many as fit: at least one trial's worth is asked for.
        return per_trial * (getattr(cfg.tune, "max_concurrent_trials", None) or 1)
    if stage == "finetune":  # skipped without data; trains with finetune.train applied to train
        if not cfg.finetune.data:
            return []
        train = cfg.finetune.train_config(cfg.train)
        return [train_worker_resources(train) for _ in range(train.num_workers)]
    if stage == "eval":
        return [eval_task_resources(cfg.eval)]
    if stage in ("curate", "tokenize"):
        return [curation_actor_resources()]
    return []


def gpu_nodes_needed(bundles: list[dict[str, float]]) -> int:
    """How many gpu_8x nodes a list of bundles fills (ceil of total GPUs / 8)."""
    gpus = sum(b.get("GPU", 0) for b in bundles)
    return int(-(-gpus // GPUS_PER_NODE))


def curation_task_args(num_cpus: float = 1) -> dict[str, float]:
    """Ray remote arguments of one curation map task (Ray Data's `map_batches(num_cpus=...)`)."""
    return {"num_cpus": curation_actor_resources(num_cpus)["CPU"]}


def train_scaling_config(train_cfg):
    """Ray Train's ScalingConfig: num_workers workers of train_worker_resources(train_cfg) each."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu,
                         resources_per_worker=train_worker_resources(train_cfg))


def eval_task_resources(eval_cfg) -> dict[str, float]:
    """One evaluation job (one model replica): eval.num_cpus CPUs, and eval.num_gpus GPUs if any."""
    bundle = {"CPU": float(eval_cfg.num_cpus)}
    if eval_cfg.num_gpus:
        bundle["GPU"] = float(eval_cfg.num_gpus)
    return bundle


def eval_task_options(eval_cfg) -> dict[str, float]:
    """`ray.remote(...).options(**this)` for one evaluation job."""
    bundle = eval_task_resources(eval_cfg)
    return {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0)}


class ResourceError(ConfigError):
    """A stage asks for resources the cluster can never provide (a config problem: `bespoke` exits 2)."""


def unschedulable(bundles: list[dict[str, float]], nodes: list[dict[str, float]]) -> dict[str, float] | None:
    """The first bundle that fits on none of the nodes (each node's total resources), else None."""
    for bundle in bundles:
        if not any(all(node.get(k, 0) >= v for k, v in bundle.items() if v) for node in nodes):
            return bundle
    return None


def preflight(stage: str, cfg, say=print, fixed_size: bool | None = None) -> list[dict[str, float]]:
    """Say what `stage` asks the cluster for; on a Ray that cannot grow, fail before launching
    work that would wait forever (a GPU asked for on a CPU-only laptop, say).

    fixed_size: None = ask cluster.ray_env (an embedded Ray cannot grow; a cluster joined through
    RAY_ADDRESS may have an autoscaler, which adds the node type a bundle needs).
    """
    import ray

    from cluster.ray_env import is_embedded
    from cluster.storage import check_cluster_storage

    if not ray.is_initialized():
        return stage_demand(stage, cfg)
    check_cluster_storage(cfg.runs_dir, cfg.shared_mounts)     # several nodes need a shared runs_dir
    bundles = stage_demand(stage, cfg)
    if not bundles:
        return bundles
    counts: dict[str, int] = {}
    for b in bundles:
        key = ", ".join(f"{k} {v:g}" for k, v in sorted(b.items()))
        counts[key] = counts.get(key, 0) + 1
    say(f"{stage}: asks Ray for " + "; ".join(f"{n} x {{{k}}}" for k, n in counts.items()))
    if fixed_size if fixed_size is not None else is_embedded():
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        bad = unschedulable(bundles, nodes)
        if bad is not None:
            have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n.items()) if k in ("CPU", "GPU"))
                             for n in nodes)
            raise ResourceError(f"{stage}: a task asks for {bad} but no node of this Ray (which cannot add "
                                f"nodes) has that much (nodes: {have}); lower the request (e.g. "
                                f"train.use_gpu=false, train.cpus_per_worker, eval.num_cpus/num_gpus) or run on a cluster")
    return bundles
