"""Dedup phases kept in storage: each phase's blocks are written as parquet, then a marker.

`find_duplicates` (dedup.py) runs its phases (edges, verified, components, labels) through a
`PhaseStore`: a phase whose marker exists is read back instead of computed, so a curation run
killed inside dedup resumes after the last finished phase. Blocks are ObjectRefs of pyarrow
tables (shuffle.py); they are written and read by Ray tasks, so no rows pass through the driver.

    <output>/dedup/<phase>/<i>.parquet    one file per block
    <output>/dedup/<phase>.done.json      {"files": [...], "rows": n}

    phases = PhaseStore("out/dedup", io={"anonymous": None, "max_attempts": 10})
    edges = phases.run("edges", lambda: by_partition(...))   # computed once, then read back
    blocks = load_blocks(["out/parts/part-00000.x.sigs.parquet"])
"""
from __future__ import annotations

import json

import ray

from pipelines.curation import store
from pipelines.progress import Meter


@ray.remote
def _load(path: str, io: dict):
    from pipelines.curation.parts import read_table

    store.configure_io(**io)
    return read_table(path)


@ray.remote
def _save(table, path: str, io: dict) -> int:
    from pipelines.curation.parts import write_table

    store.configure_io(**io)
    write_table(table, path)
    return table.num_rows


def load_blocks(paths: list[str], io: dict | None = None) -> list:
    """One block (ObjectRef of a table) per parquet file, read by a task each; `io` are
    store.configure_io's arguments for the tasks."""
    return [_load.remote(p, io or {}) for p in paths]


class PhaseStore:
    def __init__(self, root: str, progress=lambda s: None, io: dict | None = None):
        self.root, self.progress, self.io = root, progress, io or {}
        self.resumed: list[str] = []  # phases read back rather than computed, in order

    def marker(self, name: str) -> str:
        return store.join(self.root, f"{name}.done.json")

    def done(self, name: str) -> bool:
        return store.exists(self.marker(name))

    def run(self, name: str, compute) -> list:
        if self.done(name):
            files = json.loads(store.read_bytes(self.marker(name)))["files"]
            self.resumed.append(name)
            self.progress(f"curate: dedup: {name} finished in an earlier run; read back ({len(files)} files)")
            return load_blocks(files, self.io)
        blocks = compute()
        files = [store.join(self.root, name, f"{i:05d}.parquet") for i in range(len(blocks))]
        rows = self._save_all(name, blocks, files)
        store.write_bytes(self.marker(name), json.dumps({"files": files, "rows": rows}).encode())
        return blocks

    def _save_all(self, name: str, blocks: list, files: list[str]) -> int:
        """Write every block (each save waits for its block to be computed, so this is the
        phase's progress: partitions done of total, rate, ETA)."""
        pending = [_save.remote(b, f, self.io) for b, f in zip(blocks, files)]
        meter = Meter(f"curate: dedup {name}", len(pending), self.progress, unit="partitions")
        rows, done = 0, 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            rows += ray.get(ready[0])
            done += 1
            meter.update(done, f"{rows} rows")
        return rows
