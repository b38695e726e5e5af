"""Helpers shared by the curation benchmarks (curation_throughput.py and _dedup_scale.py): CPU
time over a process tree, a fresh embedded Ray, the load average and markdown tables. Not a script.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


class TreeCpu:
    """CPU seconds (user + system) used by this process and every descendant while the block runs:
    the embedded Ray's GCS, raylet and workers, and datatrove's extraction sandbox. Processes are
    sampled every 0.2 s and each keeps its last reading, so one that is killed before it is reaped
    (datatrove terminates its sandbox) still counts. Unlike wall time, CPU time barely moves when
    other jobs load the machine, so documents per CPU-second is the per-core figure."""

    def __init__(self):
        self.seconds, self._last, self._base, self._workers = 0.0, {}, {}, set()
        self.by_kind = {}  # CPU s of Ray workers (ray::*: the tasks), this process, everything else
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict:
        import psutil

        out = {}
        for p in [psutil.Process()] + psutil.Process().children(recursive=True):
            try:
                t = p.cpu_times()
                key = (p.pid, p.create_time())
                out[key] = t.user + t.system
                if p.name().startswith("ray::"):
                    self._workers.add(key)
            except psutil.Error:
                pass
        return out

    def _run(self):
        while not self._stop.wait(0.2):
            self._last.update(self._sample())

    def __enter__(self):
        self._base = self._sample()
        self._last = dict(self._base)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        used = {k: v - self._base.get(k, 0.0) for k, v in self._last.items()}
        self.seconds = sum(used.values())
        me = next((k for k in used if k[0] == os.getpid()), None)
        workers = sum(v for k, v in used.items() if k in self._workers)
        self.by_kind = {"workers": workers, "driver": used.get(me, 0.0),
                        "other": self.seconds - workers - used.get(me, 0.0)}


def start_ray(num_cpus: int | None = None, tries: int = 3) -> None:
    """A fresh embedded Ray; on a heavily loaded machine its start can time out, so retry."""
    import ray

    from cluster import connect

    for attempt in range(tries):
        if ray.is_initialized():
            ray.shutdown()
        try:
            connect(num_cpus=num_cpus)
            return
        except Exception as exc:  # noqa: BLE001 - "node timed out during startup" under load
            print(f"ray start failed ({exc}); retry {attempt + 1}/{tries}", flush=True)
            time.sleep(10)
    connect(num_cpus=num_cpus)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def table(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
