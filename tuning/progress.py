"""One progress line per Tune trial result and per finished or failed trial (a Tune callback)."""
from __future__ import annotations

from typing import Callable

from ray.tune import Callback


class TuneProgress(Callback):
    """Print through the caller's progress function; Tune pickles callbacks into its experiment
    state, so the function does not travel (a restored one prints)."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress, self.finished = progress, 0

    def __getstate__(self) -> dict:
        return {"finished": self.finished}

    def __setstate__(self, state: dict) -> None:
        self.progress, self.finished = print, state["finished"]

    @staticmethod
    def _name(trial) -> str:
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items())
        return f"trial {trial.trial_id} ({params})"

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress(f"tune: {self._name(trial)} step {result.get('step')} "
                      f"val_loss {result.get('val_loss', float('nan')):.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished += 1
        self.progress(f"tune: {self._name(trial)} done ({self.finished}/{len(trials)})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress(f"tune: {self._name(trial)} FAILED (details: {trial.error_file})")
