"""Free the Ray Train placement group of a Tune trial that ended, before the next trial needs the CPUs.

Why (Ray 2.60, ray-project/ray#54305): a trial's TorchTrainer runs a Train controller actor that
creates the workers' placement group. The group belongs to the *job* (the Tune driver), not to
the controller, so when Tune stops a trial (ASHA, HyperBand, PBT, the end of the experiment) by
ending its actor, the controller dies with it and the group stays reserved until the driver
exits. Ray Train's own PlacementGroupCleaner should remove it, but it learns that the controller
died only through the state API (the dashboard's HTTP server, found by address auto-detection).
Both failed on this machine, where several Ray instances run side by side: the dashboard port was
taken ("http server disabled": the cleaner polled 51 times in vain), and the cleaner's monitor
thread died on "ConnectionError: Found multiple active Ray instances". Either way the group is
never freed and later trials wait forever for CPUs ("0.0 used of 2.0 reserved in placement groups").

The fix, owned by the Tune driver and independent of the dashboard:
  * `RecordPlacementGroup`, a Ray Train worker-group callback in each trial's TorchTrainer, writes
    the group's id to Ray's internal key-value store (GCS) under the trial's id when workers start;
  * `PlacementGroupReaper`, a Tune callback, removes the recorded groups of every trial that is no
    longer running (completed, stopped early, failed, paused by PBT/HyperBand) and at the end.
Removing a group that Train already removed is a no-op.
"""
from __future__ import annotations

import time

from ray.train.v2._internal.execution.callback import WorkerGroupCallback  # the group's owner hook
from ray.tune import Callback

NAMESPACE = "bespoke_tune"


def _key(trial_id: str, pg_hex: str = "") -> bytes:
    return f"pg/{trial_id}/{pg_hex}".encode()


class RecordPlacementGroup(WorkerGroupCallback):
    """Runs in the trial's Train controller: record each worker group's placement group."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id

    def after_worker_group_start(self, worker_group) -> None:
        from ray.experimental.internal_kv import _internal_kv_put

        pg = worker_group.get_worker_group_state().placement_group_handle.placement_group
        _internal_kv_put(_key(self.trial_id, pg.id.hex()), b"1", namespace=NAMESPACE)


def reap_trial(trial_id: str) -> int:
    """Remove the trial's recorded placement groups that still hold resources; returns how many."""
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_list
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group
    from ray._raylet import PlacementGroupID

    removed = 0
    for key in _internal_kv_list(_key(trial_id), namespace=NAMESPACE):
        pg = PlacementGroup(PlacementGroupID(bytes.fromhex(key.decode().rsplit("/", 1)[1])))
        if placement_group_table(pg).get("state") not in (None, "REMOVED"):
            remove_placement_group(pg)
            removed += 1
        _internal_kv_del(key, namespace=NAMESPACE)
    return removed


def reserved_placement_groups() -> list[dict]:
    """Placement groups that still reserve resources (CREATED or PENDING), Tune's own included."""
    from ray.util.placement_group import placement_group_table

    return [pg for pg in placement_group_table().values() if pg.get("state") in ("CREATED", "PENDING", "RESCHEDULING")]


class PlacementGroupReaper(Callback):
    """Tune driver callback: free the Train placement groups of trials that stopped running."""

    def __init__(self, check_every_s: float = 2.0) -> None:
        self.check_every_s, self.removed, self._last = check_every_s, 0, 0.0

    def __getstate__(self) -> dict:   # Tune pickles callbacks into its experiment state
        return {"check_every_s": self.check_every_s, "removed": self.removed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["check_every_s"])
        self.removed = state["removed"]

    def _reap(self, trial_id: str) -> None:
        self.removed += reap_trial(trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._reap(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._reap(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        # Paused trials (PBT, HyperBand) have no hook of their own; look every few seconds.
        if time.monotonic() - self._last < self.check_every_s:
            return
        self._last = time.monotonic()
        for trial in trials:
            if trial.status in ("PAUSED", "TERMINATED", "ERROR"):
                self._reap(trial.trial_id)

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            self._reap(trial.trial_id)
