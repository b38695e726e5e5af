"""Connect to the Ray this process should use: the cluster in RAY_ADDRESS, or an embedded one.

A stage calls `connect()` first. Under `ray job submit` (or with RAY_ADDRESS set) it joins that
cluster; on a laptop it starts an embedded Ray sized to the machine. Calling it twice is harmless.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket

from cluster import quiet

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
        for key, value in quiet.embedded_env(num_cpus).items():
            os.environ.setdefault(key, value)
        log.info("starting an embedded Ray (num_cpus=%s)", num_cpus or "all")
        _say_if_stale_address_file()
        # address="local": always start a new Ray. Without it ray.init() joins whatever
        # /tmp/ray/ray_current_cluster names, which a cluster that died uncleanly (a killed job, a
        # crashed `ray start`) leaves behind, and then fails ("num_cpus and num_gpus must not be
        # provided") or attaches to someone else's cluster.
        # The dashboard hosts the state API that Ray Train V2 polls to clean up placement groups;
        # without it every run logs "State API may be temporarily unavailable" warnings.
        with _workers_know_this_ray():
            ray.init(address="local", num_cpus=num_cpus, log_to_driver=True,
                     configure_logging=True, logging_level=logging.WARNING)
        _EMBEDDED = True
    os.environ.update({k: v for k, v in quiet.driver_env().items() if k not in os.environ})
    quiet.quiet_driver()
    _quiet_ray_data()


def _say_if_stale_address_file() -> None:
    """One line when Ray's "current cluster" file exists: this run does not join what it names."""
    from ray._common.utils import get_ray_address_file

    path = get_ray_address_file(None)      # $RAY_TMPDIR/ray (default /tmp/ray)/ray_current_cluster
    if os.path.exists(path):
        print(f"bespoke: starting an embedded Ray (RAY_ADDRESS is unset; {path} is ignored)", flush=True)


@contextlib.contextmanager
def _workers_know_this_ray():
    """Start the embedded Ray on a chosen GCS port with RAY_ADDRESS naming it, so that its raylet
    and every worker process inherit the address.

    Ray code that runs in workers and looks the cluster up with no address (Ray Train's
    placement-group cleaner calls the state API) otherwise reads RAY_ADDRESS, then
    ray_current_cluster, then every GCS process on the machine: a stale file sends it to a dead
    cluster, and two Rays on one machine make it fail ("Found multiple active Ray instances").
    ray.init(address="local") itself ignores RAY_ADDRESS; this process's environment is restored
    afterwards, so a later connect() starts afresh.
    """
    from ray._private.services import get_node_ip_address

    port = _free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{port}"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _quiet_ray_data() -> None:
    """Ray Data prints a progress bar per operator; keep one line per dataset instead (the
    stages print their own progress). --verbose keeps Ray Data's defaults."""
    import ray

    if quiet.verbose():
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("BESPOKE_PROGRESS_BARS", "0") == "1"
    # Ray Data logs two INFO lines per dataset; the stages print their own progress.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
