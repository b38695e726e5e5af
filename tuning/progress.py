"""Progress of a Tune search, one line per update: each trial's steps with rate and ETA, and the
search as a whole (trials done of total, rate, ETA, best so far). A Tune callback.

    callbacks=[TuneProgress(print, max_steps=200, metric="val_loss")]
    # tune: trial 69fe7_00000 (lr=0.00433 batch_size=16) 5/20, first report after 53 s, val_loss 6.514
    # tune: trial 69fe7_00000 (lr=0.00433 batch_size=16) 10/20 (50%), 4.10 steps/s, ETA 2 s, val_loss 6.107
    # tune: search 1/2 (50%), 0.02 trials/s, ETA 45 s, best val_loss 6.002 (trial 69fe7_00000)

A trial's first report says how long its start-up took; its later lines come through
pipelines/progress.py's Meter (rate and ETA measured from the first report, at most one line per
`every_s`, and its last step); the search prints a line whenever a trial ends.
Tests: tests/test_progress.py.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from ray.tune import Callback

from pipelines.progress import Meter, duration


class TuneProgress(Callback):
    """Print through the caller's progress function; Tune pickles callbacks into its experiment
    state, so the function and the meters do not travel (a restored one prints, new meters)."""

    def __init__(self, progress: Callable[[str], None], max_steps: int = 0, metric: str = "val_loss",
                 every_s: float = 5.0) -> None:
        self.progress, self.max_steps, self.metric, self.every_s = progress, max_steps, metric, every_s
        self.finished, self.total, self.best = 0, 0, None
        self._trials: dict[str, Meter] = {}
        self._reported: set[str] = set()
        self._search: Meter | None = None

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("max_steps", "metric", "every_s", "finished", "total", "best")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.progress, self._trials, self._reported, self._search = print, {}, set(), None

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.total = int(total_num_samples or num_samples or 0)

    @staticmethod
    def _name(trial) -> str:
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items())
        return f"trial {trial.trial_id} ({params})"

    def _trial_meter(self, trial) -> Meter:
        if trial.trial_id not in self._trials:
            self._trials[trial.trial_id] = Meter(f"tune: {self._name(trial)}", self.max_steps, self.progress,
                                                 unit="steps", every_s=self.every_s)
        return self._trials[trial.trial_id]

    def _search_meter(self, trials) -> Meter:
        total = max(self.total, len(trials))
        if self._search is None:
            self._search = Meter("tune: search", total, self.progress, unit="trials", every_s=0)
        self._search.total = total
        return self._search

    def on_trial_start(self, iteration, trials, trial, **info):
        self._trial_meter(trial)
        self._search_meter(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and (self.best is None or value < self.best[0]):
            self.best = (float(value), trial.trial_id)
        shown = f"{self.metric} {value:.3f}" if isinstance(value, (int, float)) else f"{self.metric} -"
        meter, step = self._trial_meter(trial), int(result.get("step") or 0)
        if trial.trial_id in self._reported:
            meter.update(step, shown)
            return
        # The first report comes after Ray Train's start-up; the rate is measured from here on.
        self._reported.add(trial.trial_id)
        self.progress(f"{meter.label} {step}/{self.max_steps}, first report after "
                      f"{duration(time.time() - meter.started)}, {shown}")
        meter.restart(step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trials, trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trials, trial, f"FAILED (details: {trial.error_file})")

    def _ended(self, trials, trial, how: str) -> None:
        self.finished += 1
        meter = self._trial_meter(trial)
        self.progress(f"{meter.label} {how}")
        best = f"best {self.metric} {self.best[0]:.3f} (trial {self.best[1]})" if self.best else f"no {self.metric} yet"
        self._search_meter(trials).update(self.finished, best)
