"""Token shards: how the tokenize stage stores packed tokens, and how training and evaluation read them.

    record = write_shard(tokens_dir, "train", 3, [(flat_ids_with_eos, n_chars), ...], 4096, "uint16", eos_id)
    write_manifest(tokens_dir, {"train": [record, ...], "val": [...]}, "uint16")
    shards = open_shards(tokens_dir, "train")          # ShardReader per shard: .n_tokens, .read(start, n)
    tokens = split_tokens(tokens_dir, "val", max_tokens=100_000)   # the first tokens of a split, in order

Layout under `tokens_dir` (a local path, a shared mount, `s3://` or `gs://`; I/O through
pipelines/curation/store.py):
  meta.json                     vocab_size, dtype, eos_id, per-split counts, the unigram baseline
  manifest.json                 {"dtype", "splits": {split: [{"name", "source", "datasets", "tokens", "docs",
                                "chars"}]}}: source is the curated file, datasets the source names in it
  <split>/shard-NNNNN.bin       one curated file's documents, in order, each followed by end-of-text
  <split>/shard-NNNNN.idx       int64 end offset (exclusive) of every document in the .bin
  <split>/shard-NNNNN.counts    int64 histogram of the shard's token ids (vocab_size entries): the
                                unigram baseline is computed from these, never from the tokens
  <split>/shard-NNNNN.done.json the completion marker, written last (counts, source, tokenizer sha256):
                                a rerun skips a shard whose marker names the same source and tokenizer
A folder with one flat `train.bin` / `val.bin` (older versions, hand-made test data) reads as one
shard per split. Local shards are memory-mapped; remote ones are read by byte range (one request
per window), so no rank ever downloads a whole shard.

Tests: tests/test_tokenize.py (layout, resume, S3), tests/test_token_loader.py (reading).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable

import numpy as np

from pipelines.curation import store

SHARD_SUFFIXES = (".bin", ".idx", ".counts")


def shard_name(split: str, index: int) -> str:
    return f"{split}/shard-{index:05d}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- writing

def write_shard(tokens_dir: str, split: str, index: int, batches: Iterable[tuple[np.ndarray, int]],
                vocab_size: int, dtype: str, eos_id: int, source: str = "", tokenizer_sha: str = "",
                datasets: Iterable[str] = ()) -> dict:
    """Stream (flat token ids with an eos after every document, their characters) batches into
    one shard; returns its record.

    The .bin is written as the batches come (bounded memory); .idx, .counts and last the marker
    follow. On object storage each object appears only when complete, so a killed task leaves no
    marker and a rerun writes the shard again. A stream not ending in eos ends its last document
    at the end of the shard."""
    name = shard_name(split, index)
    counts = np.zeros(vocab_size, dtype=np.int64)
    ends: list[np.ndarray] = []
    n_tokens = n_chars = 0
    with store.open_output(store.join(tokens_dir, name + ".bin")) as out:
        for flat, chars in batches:
            flat = np.asarray(flat, dtype=dtype)
            out.write(flat.tobytes())
            counts += np.bincount(flat, minlength=vocab_size)
            ends.append(n_tokens + np.flatnonzero(flat == eos_id).astype(np.int64) + 1)
            n_tokens += len(flat)
            n_chars += int(chars)
    idx = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    if n_tokens and (len(idx) == 0 or idx[-1] != n_tokens):
        idx = np.append(idx, n_tokens)
    store.write_bytes(store.join(tokens_dir, name + ".idx"), idx.astype("<i8").tobytes())
    store.write_bytes(store.join(tokens_dir, name + ".counts"), counts.astype("<i8").tobytes())
    record = {"name": name, "split": split, "index": index, "source": source, "datasets": sorted(datasets),
              "tokens": n_tokens, "docs": len(idx), "chars": n_chars, "tokenizer_sha256": tokenizer_sha}
    store.write_bytes(store.join(tokens_dir, name + ".done.json"), json.dumps(record).encode())
    return record


def finished_shard(tokens_dir: str, split: str, index: int, source: str, tokenizer_sha: str) -> dict | None:
    """The marker's record when this shard was finished from the same source with the same tokenizer."""
    path = store.join(tokens_dir, shard_name(split, index) + ".done.json")
    if not store.exists(path):
        return None
    record = json.loads(store.read_bytes(path))
    same = record.get("source") == source and record.get("tokenizer_sha256") == tokenizer_sha
    return record if same and "datasets" in record else None    # older markers lack the source names


def write_manifest(tokens_dir: str, records: dict[str, list[dict]], dtype: str) -> dict:
    keep = ("name", "source", "datasets", "tokens", "docs", "chars")
    manifest = {"dtype": dtype, "splits": {split: [{k: r[k] for k in keep if k in r}
                                                   for r in sorted(recs, key=lambda r: r["name"])]
                                           for split, recs in records.items()}}
    store.write_bytes(store.join(tokens_dir, "manifest.json"), json.dumps(manifest, indent=1).encode())
    return manifest


def split_counts(tokens_dir: str, records: list[dict], vocab_size: int) -> np.ndarray:
    """The summed token histogram of a split's shards (reads only the small .counts files)."""
    total = np.zeros(vocab_size, dtype=np.int64)
    for r in records:
        total += np.frombuffer(store.read_bytes(store.join(tokens_dir, r["name"] + ".counts")), dtype="<i8")
    return total


def unigram_from_counts(train_counts: np.ndarray, val_counts: np.ndarray) -> float:
    """What pipelines.tokenize.unigram_cross_entropy(train, val) gives, from the two histograms:
    the add-one-smoothed unigram model of train scored on the val tokens (nats/token)."""
    smoothed = train_counts.astype(np.float64) + 1.0
    log_probs = np.log(smoothed / smoothed.sum())
    return float(-(val_counts * log_probs).sum() / max(1, val_counts.sum()))


# ---------------------------------------------------------------- reading

def read_meta(tokens_dir: str) -> dict:
    return json.loads(store.read_bytes(store.join(str(tokens_dir), "meta.json")))


def read_manifest(tokens_dir: str) -> dict | None:
    path = store.join(str(tokens_dir), "manifest.json")
    return json.loads(store.read_bytes(path)) if store.exists(path) else None


class ShardReader:
    """Random access to one shard's tokens: a memory map for local files, range reads for URLs.
    Pickles small (the map and the remote handle are opened again, lazily, where it is used)."""

    def __init__(self, path: str, dtype: str, n_tokens: int | None = None) -> None:
        self.path, self.dtype, self.remote = path, np.dtype(dtype), store.is_url(path)
        self._handle = None
        if n_tokens is None:
            n_tokens = len(self._open()) if not self.remote else self._open().size() // self.dtype.itemsize
        self.n_tokens = int(n_tokens)

    def _open(self):
        if self._handle is None:
            if self.remote:
                self._handle = store.open_input(self.path)
            elif os.path.getsize(self.path) == 0:      # np.memmap refuses empty files
                self._handle = np.zeros(0, dtype=self.dtype)
            else:
                self._handle = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._handle

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the shard."""
        if not self.remote:
            return np.asarray(self._open()[start:start + length])
        size = self.dtype.itemsize
        return np.frombuffer(self._open().read_at(length * size, start * size), dtype=self.dtype)

    def __getstate__(self):
        return {**self.__dict__, "_handle": None}


def open_shards(tokens_dir: str, split: str, dtype: str | None = None) -> list[ShardReader]:
    """Readers for a split's shards in manifest order (a legacy flat <split>.bin is one shard)."""
    tokens_dir = str(tokens_dir)
    manifest = read_manifest(tokens_dir)
    if manifest is None:
        legacy = store.join(tokens_dir, f"{split}.bin")
        if not store.exists(legacy):
            raise FileNotFoundError(f"{tokens_dir} has neither manifest.json nor {split}.bin: run `bespoke tokenize` first")
        return [ShardReader(legacy, dtype or read_meta(tokens_dir)["dtype"])]
    entries = manifest["splits"].get(split)
    if entries is None:
        raise FileNotFoundError(f"{tokens_dir}/manifest.json lists no {split!r} split")
    return [ShardReader(store.join(tokens_dir, e["name"] + ".bin"), manifest["dtype"], e["tokens"]) for e in entries]


def shard_datasets(tokens_dir: str, split: str) -> list[list[str]] | None:
    """The source names of each shard of a split, in manifest order; None where the manifest does
    not record them (a legacy folder, or shards packed before they were recorded)."""
    manifest = read_manifest(str(tokens_dir))
    entries = (manifest or {}).get("splits", {}).get(split)
    if not entries or any("datasets" not in e for e in entries):
        return None
    return [list(e["datasets"]) for e in entries]


def split_tokens(tokens_dir: str, split: str, max_tokens: int | None = None) -> np.ndarray:
    """The first max_tokens (all when None) of a split, shards concatenated in manifest order."""
    pieces, have = [], 0
    for shard in open_shards(tokens_dir, split):
        take = shard.n_tokens if max_tokens is None else min(shard.n_tokens, max_tokens - have)
        if take > 0:
            pieces.append(shard.read(0, take))
            have += take
        if max_tokens is not None and have >= max_tokens:
            break
    dtype = pieces[0].dtype if pieces else np.uint16
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)


def document_ends(tokens_dir: str, name: str) -> np.ndarray:
    """A shard's document boundaries: the exclusive end offset of every document."""
    return np.frombuffer(store.read_bytes(store.join(str(tokens_dir), name + ".idx")), dtype="<i8")
