"""The last curation phase: dedup decisions back onto each part, the val split, mixing, and the
train/, val/ and rejected/ parquet, one file of each per part, written by the part's own task.

Duplicates are decided per document node (id + part, dedup.py); `route_labels` groups those
decisions by part into `buckets` files (a hash of the part name picks the file, rows sorted by
part), so the task that finishes part X reads one bucket file, filtered to X, and never the
documents of other parts: no document text is shuffled. `finalize_part` then sets the duplicate
statuses, assigns split and copies (mixing.py), counts every row (report.count_table) and writes

    <output>/train/<part>.parquet  <output>/val/<part>.parquet  <output>/rejected/<part>.parquet
    <output>/final/<part>.done.json          its counts: the report is the sum of these

    buckets = route_labels(label_blocks, "out/", parts_for(n, cpus))   # once, after dedup
    marker = finalize_part(part, part_marker, cfg, "out/", buckets)    # one Ray task per part
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipelines.curation import store
from pipelines.curation.dedup import split_node
from pipelines.curation.mixing import AssignSplit, repeat_rows
from pipelines.curation.parts import Part, part_dir, read_table, write_table
from pipelines.curation.report import count_table
from pipelines.curation.shuffle import by_partition, partition_of

OUTPUT_COLUMNS = ["id", "text", "url", "source", "meta"]
_ROUTED = pa.schema([("part", pa.string()), ("id", pa.string()), ("status", pa.string())])


def labels_dir(output: str) -> str:
    return store.join(output, "dedup", "by_part")


def _bucket_file(output: str, bucket: int) -> str:
    return store.join(labels_dir(output), f"bucket-{bucket:05d}.parquet")


def route_labels(labels: list, output: str, buckets: int, io: dict | None = None) -> int:
    """Write the (node, status) decisions grouped by part into `buckets` files; returns the
    number of decisions. Resumable: a finished routing has a marker."""
    marker = store.join(output, "dedup", "by_part.done.json")
    if store.exists(marker):
        return json.loads(store.read_bytes(marker))["rows"]
    written = by_partition(labels, "part", _BucketWriter(output, buckets, io or {}), buckets, prep=_with_part)
    rows = sum(ray.get([_rows.remote(w) for w in written]))
    store.write_bytes(marker, json.dumps({"rows": rows, "buckets": buckets}).encode())
    return rows


@ray.remote
def _rows(t: pa.Table) -> int:
    return int(pc.sum(t["rows"]).as_py() or 0) if t.num_rows else 0


def _with_part(t: pa.Table) -> pa.Table:
    pairs = [split_node(n) for n in t["id"].to_pylist()]
    return pa.Table.from_pydict({"part": [p for _, p in pairs], "id": [i for i, _ in pairs],
                                 "status": t["status"]}, schema=_ROUTED)


class _BucketWriter:
    """by_partition's reduce: one bucket's decisions, sorted by part, to its file."""

    def __init__(self, output: str, buckets: int, io: dict):
        self.output, self.buckets, self.io = output, buckets, io

    def __call__(self, t: pa.Table) -> pa.Table:
        store.configure_io(**self.io)
        if t.num_rows:
            bucket = int(partition_of([t["part"][0].as_py()], self.buckets)[0])
            t = t.sort_by([("part", "ascending"), ("id", "ascending")])
            write_table(t, _bucket_file(self.output, bucket))
        return pa.table({"rows": [t.num_rows]})


def labels_for(part: Part, output: str, buckets: int) -> dict[str, str]:
    """{id: status} of the duplicates in one part."""
    if not buckets:
        return {}
    path = _bucket_file(output, int(partition_of([part.name], buckets)[0]))
    if not store.exists(path):
        return {}
    t = read_table(path, filters=[("part", "=", part.name)])
    return dict(zip(t["id"].to_pylist(), t["status"].to_pylist()))


def final_marker(output: str, part: Part) -> str:
    return store.join(output, "final", f"{part.name}.done.json")


def finalize_part(part: Part, done: dict, cfg, output: str, buckets: int) -> dict:
    """Apply dedup, split, mix, count and write one part; its marker holds the counts."""
    marker_path = final_marker(output, part)
    if store.exists(marker_path):
        return json.loads(store.read_bytes(marker_path))
    t = read_table(store.join(part_dir(output), done["data"]))
    labels = labels_for(part, output, buckets)
    if labels:
        status = [labels.get(i, s) for i, s in zip(t["id"].to_pylist(), t["status"].to_pylist())]
        t = t.set_column(t.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    t = AssignSplit(cfg.seed, cfg.val_fraction, cfg.source_weights)(t)
    written = {}
    for split, columns in (("train", OUTPUT_COLUMNS), ("val", OUTPUT_COLUMNS), ("", OUTPUT_COLUMNS + ["status"])):
        folder = split or "rejected"
        if folder == "rejected" and not cfg.write_rejected:
            continue
        rows = t.filter(pc.equal(t["split"], split))
        rows = (repeat_rows(rows) if split == "train" else rows).select(columns)
        if rows.num_rows:
            write_table(rows, store.join(output, folder, f"{part.name}.parquet"))
        written[folder] = rows.num_rows
    marker = {"name": part.name, "counts": count_table(t), "written": written}
    store.write_bytes(marker_path, json.dumps(marker).encode())
    return marker
