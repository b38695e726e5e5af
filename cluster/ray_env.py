"""Connect to the Ray this process should use: the cluster in RAY_ADDRESS, or an embedded one.

A stage calls `connect()` first. Under `ray job submit` (or with RAY_ADDRESS set) it joins that
cluster; on a laptop it starts an embedded Ray sized to the machine. Calling it twice is harmless.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


_EMBEDDED = False


def is_embedded() -> bool:
    """True when connect() started Ray in this process (a fixed-size, one-machine Ray)."""
    return _EMBEDDED


def connect(num_cpus: int | None = None) -> None:
    """Join the Ray cluster named by RAY_ADDRESS, or start an embedded one, once per process."""
    import ray

    global _EMBEDDED
    if ray.is_initialized():
        return
    # Quiet, single-machine defaults; a real cluster sets its own via RAY_ADDRESS / ray start.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        # Local clusters need no token: the embedded head and this driver are one process tree.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # On a busy 2-core laptop starting worker processes can take longer than Ray Train's
        # 60 s default; the embedded Ray inherits this process's environment.
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
        # Ray Train's controller polls its workers every 2 s, so each run (and each Tune trial)
        # ends up to 2 s after its last step, ~4 s in practice; locally polling is cheap.
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        log.info("starting an embedded Ray (num_cpus=%s)", num_cpus or "all")
        # address="local": always start a new Ray. Without it ray.init() joins whatever
        # /tmp/ray/ray_current_cluster names, which a cluster that died uncleanly (a killed job, a
        # crashed `ray start`) leaves behind, and then fails ("num_cpus and num_gpus must not be
        # provided") or attaches to someone else's cluster.
        if os.path.exists("/tmp/ray/ray_current_cluster"):
            print("bespoke: starting an embedded Ray (RAY_ADDRESS is unset; "
                  "/tmp/ray/ray_current_cluster is ignored)", flush=True)
        # The dashboard hosts the state API that Ray Train V2 polls to clean up placement groups;
        # without it every run logs "State API may be temporarily unavailable" warnings.
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=True,
                 configure_logging=True, logging_level=logging.WARNING)
        _EMBEDDED = True
    _quiet_ray_data()


def _quiet_ray_data() -> None:
    """Ray Data prints a progress bar per operator; keep one line per dataset instead."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("BESPOKE_PROGRESS_BARS", "0") == "1"
    # Ray Data logs two INFO lines per dataset; the stages print their own progress.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
