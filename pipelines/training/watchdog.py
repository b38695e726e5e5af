"""Training never hangs waiting for workers: a Ray Train controller callback with a deadline.

Ray Train 2.60 retries a worker group that cannot start without end (`FailureConfig`'s
controller_failure_limit is -1: one `WorkerGroupStartupTimeoutError` per minute, forever), and an
elastic run below its minimum waits for resources without end. `WorkerStartWatchdog` runs in the
controller and, once the run has been without a running worker group for
`train.worker_start_timeout_s` (at the start, or after a lost node), stops it with
`WorkersUnavailable`: what the run asked for and what the cluster has, e.g.

    could not start 2 Ray Train workers x {CPU: 1} (at least 2 needed) within
    train.worker_start_timeout_s=30 s; the cluster has 2 alive nodes: {CPU 0}, {CPU 1} (CPU 1 free)
"""
from __future__ import annotations

import time

from ray.train.v2._internal.execution.callback import ControllerCallback

# Controller states in which no worker group runs and the controller waits to (re)start one.
WAITING_STATES = {"InitializingState", "SchedulingState", "ReschedulingState", "RestartingState",
                  "ResizingState"}


class WorkersUnavailable(RuntimeError):
    """The run could not get its workers within train.worker_start_timeout_s."""


def _bundle(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items()) if v) + "}"


def cluster_summary() -> str:
    """The alive nodes' CPU/GPU totals and what is free now, in one phrase."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    free = ray.available_resources()
    shown = ("CPU", "GPU")
    per_node = ", ".join("{" + ", ".join(f"{k} {n.get(k, 0):g}" for k in shown if k in n or k == "CPU") + "}"
                         for n in nodes)
    free_s = ", ".join(f"{k} {free.get(k, 0):g}" for k in shown if any(k in n for n in nodes) or k == "CPU")
    return f"the cluster has {len(nodes)} alive node{'s' if len(nodes) != 1 else ''}: {per_node or 'none'} ({free_s} free)"


def unavailable_message(num_workers: int, min_workers: int, resources: dict, timeout_s: float,
                        summary: str) -> str:
    need = f"at least {min_workers} needed, train.min_workers" if min_workers < num_workers \
        else f"all {num_workers} needed; set train.min_workers to continue on fewer"
    return (f"could not start {num_workers} Ray Train workers x {_bundle(resources)} ({need}) within "
            f"train.worker_start_timeout_s={timeout_s:g} s; {summary}")


class WorkerStartWatchdog(ControllerCallback):
    """Raises WorkersUnavailable once the controller has waited `timeout_s` for a worker group."""

    def __init__(self, timeout_s: float, num_workers: int, min_workers: int, resources: dict) -> None:
        self.timeout_s, self.num_workers, self.min_workers = timeout_s, num_workers, min_workers
        self.resources = dict(resources)
        self.waiting_since: float | None = None

    def after_controller_state_update(self, previous_state, current_state) -> None:
        # Called after every control-loop iteration, also when the state stays the same (an
        # elastic run below its minimum), so the deadline is checked at least every poll.
        name = type(current_state).__name__
        if name not in WAITING_STATES:
            self.waiting_since = None      # running, or shutting down / finished / errored
            return
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif now - self.waiting_since > self.timeout_s:
            self.waiting_since = None
            raise WorkersUnavailable(unavailable_message(self.num_workers, self.min_workers, self.resources,
                                                         self.timeout_s, cluster_summary()))


def find_unavailable(exc: BaseException | None) -> WorkersUnavailable | None:
    """The WorkersUnavailable inside a Ray Train error (ControllerError wraps it), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WorkersUnavailable):
            return exc
        inner = getattr(exc, "controller_failure", None)
        exc = inner if inner is not None else (exc.__cause__ or exc.__context__)
    return None
