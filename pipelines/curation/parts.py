"""Input parts: the unit of work, of output and of resume in the curation stage.

A part is one input file, or one fixed piece of it (`piece` of `pieces`: a byte range of a
gzip-per-record WARC, whose members starting in it are the piece's, or, in other formats, the
records whose index is `piece` modulo `pieces`), so a few large files still fill every core. The plan
depends only on the inputs (never on the cluster's size), so a rerun on another cluster finds the
same parts. Each part is processed by one task (`process_part`): read -> every per-document step
-> dedup signatures, streamed in batches of `cfg.batch_size` rows, and written to storage as

    <output>/parts/<name>.<attempt>.parquet        every row with its status (no HTML)
    <output>/parts/<name>.<attempt>.sigs.parquet   (id, exact, sig) of the kept rows, for dedup
    <output>/parts/<name>.done.json                the completion marker: counts and file names

The marker is written last, so a part is finished exactly when its marker exists; a task killed
half way leaves at most an attempt file that no marker names (removed at the end of the run). A
task whose marker already exists returns it without redoing the work (Ray may re-run a finished
task to rebuild a lost result after a node dies).

    parts = plan_parts(files, cfg.min_parts)               # [Part(index=0, name="part-00000", ...)]
    marker = process_part(parts[0], cfg, "out/")           # no Ray needed (tests)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.curation import store
from pipelines.curation.dedup import signature_table
from pipelines.curation.readers import KEPT, SCHEMA, iter_file_rows, split_name



@dataclasses.dataclass(frozen=True)
class Part:
    index: int
    file: str  # as given to the readers: `path` or `name=path`
    piece: int = 0
    pieces: int = 1
    # Gzip-per-record WARCs are cut by bytes (the members starting in [start, end), warc.py), so
    # a piece reads only its share; other formats by record index (piece modulo pieces).
    start: int | None = None
    end: int | None = None

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


def plan_parts(files: list[str], min_parts: int = 16) -> list[Part]:
    """One part per file; with fewer than `min_parts` files each is cut into enough pieces:
    WARC/WET files by byte ranges of equal size, other files by record index."""
    pieces = max(1, -(-min_parts // max(1, len(files))))
    parts = []
    for i, item in enumerate(files):
        size = _size(item) if pieces > 1 and _by_bytes(item) else None
        for k in range(pieces):
            span = (k * size // pieces, (k + 1) * size // pieces if k < pieces - 1 else None) if size else (None, None)
            parts.append(Part(i * pieces + k, item, k, pieces, *span))
    return parts


def _by_bytes(item: str) -> bool:
    return split_name(item)[1].lower().endswith((".warc.gz", ".wet.gz"))


def _size(item: str) -> int:
    import fsspec

    fs, path = fsspec.core.url_to_fs(split_name(item)[1])
    return int(fs.size(path))


def part_dir(output: str) -> str:
    return store.join(output, "parts")


def marker_path(output: str, part: Part) -> str:
    return store.join(part_dir(output), f"{part.name}.done.json")


def read_markers(paths_of: dict[int, str], folder: str) -> dict[int, dict]:
    """{part index: marker} of the markers that exist among {index: marker path}: one listing of
    `folder`, then the existing ones read concurrently (store.read_json_files)."""
    present = {p.rsplit("/", 1)[-1] for p in store.list_files(folder, ".done.json")}
    wanted = {i: p for i, p in paths_of.items() if p.rsplit("/", 1)[-1] in present}
    found = store.read_json_files(list(wanted.values()))
    return {i: found[p] for i, p in wanted.items() if p in found}


def read_marker(output: str, part: Part) -> dict | None:
    path = marker_path(output, part)
    return json.loads(store.read_bytes(path)) if store.exists(path) else None


def process_part(part: Part, cfg, output: str) -> dict:
    """Read, run the per-document steps and make signatures for one part; write its files and
    marker; return the marker (small: counts and names, never rows)."""
    done = read_marker(output, part)
    if done is not None:
        return done
    started, cpu = time.time(), time.process_time()
    attempt = uuid.uuid4().hex[:8]
    data_name, sig_name = f"{part.name}.{attempt}.parquet", f"{part.name}.{attempt}.sigs.parquet"
    steps = _steps(cfg)
    counts = {"rows": 0, "kept": 0}
    with _Writer(store.join(part_dir(output), data_name)) as rows_out, \
            _Writer(store.join(part_dir(output), sig_name)) as sigs_out:
        for batch in _batches(part, cfg):
            for step in steps:
                batch = step(batch)
            rows_out.write(batch)
            sigs = signature_table(batch, cfg, part=part.name)
            sigs_out.write(sigs)
            counts["rows"] += batch.num_rows
            counts["kept"] += int(pc.sum(pc.equal(batch["status"], KEPT)).as_py() or 0)
    marker = {"part": dataclasses.asdict(part), "name": part.name, "data": data_name, "sigs": sig_name,
              **counts, "seconds": round(time.time() - started, 3),
              "cpu_seconds": round(time.process_time() - cpu, 3)}
    store.write_bytes(marker_path(output, part), json.dumps(marker).encode())
    return marker


def _batches(part: Part, cfg):
    """Tables of up to cfg.batch_size rows of this part's records; at least one (maybe empty)
    table, so the steps always fix the output schema."""
    rows, sent = [], False
    opts = {"text_column": cfg.text_column}
    by_bytes = part.start is not None
    if by_bytes:
        opts["byte_range"] = (part.start, part.end)
    for i, r in enumerate(iter_file_rows(part.file, opts)):
        if not by_bytes and i % part.pieces != part.piece:
            continue
        rows.append(r)
        if len(rows) >= cfg.batch_size:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)
            rows, sent = [], True
    if rows or not sent:
        yield pa.Table.from_pylist(rows, schema=SCHEMA)


@functools.lru_cache(maxsize=4)
def _cached_steps(cfg_json: str):
    from pipelines.curation.config import CurateConfig
    from pipelines.curation.steps import per_document_steps

    return per_document_steps(CurateConfig(**json.loads(cfg_json)))


def _steps(cfg):
    """The steps, built once per worker process and config (language-id model, n-gram sets)."""
    return _cached_steps(json.dumps(dataclasses.asdict(cfg), sort_keys=True))


class _Writer:
    """A parquet file written batch by batch to storage (bounded memory); the file exists,
    possibly empty, once the block ends."""

    def __init__(self, path: str):
        self.path, self._sink, self._writer, self._schema = path, None, None, None

    def __enter__(self):
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._sink = store.open_output(self.path)
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._sink, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._schema))

    def __exit__(self, kind, exc, tb):
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        return False


def read_table(path: str, columns: list[str] | None = None, filters=None) -> pa.Table:
    """One parquet file from storage."""
    with store.open_input(path) as f:
        return pq.read_table(f, columns=columns, filters=filters)


def write_table(table: pa.Table, path: str) -> None:
    """One parquet file to storage, whole or not at all (store.write_bytes)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    store.write_bytes(path, buf.getvalue().to_pybytes())
