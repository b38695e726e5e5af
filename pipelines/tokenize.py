"""Tokenize stage: train a byte-level BPE tokenizer on curated text and pack it into token shards.

    bespoke tokenize --config configs/demo.yaml        # reads runs/<name>/curated, writes tokenizer/ + tokens/
    run_tokenize(cfg, "s3://bucket/curated", "runs/x/tokenizer", "s3://bucket/tokens")   # any store path

Learns BPE merges on a bounded sample of the training text (read on the driver, files in order),
then packs every curated parquet file (`train/part-NNNNN.parquet`, `val/...`) in its own Ray task
(Ray Data `map` over the file list, as many at once as the cluster has CPUs): the task encodes
its file's documents and writes its own shard straight to storage, documents concatenated with an
end-of-text token after each, plus the document index, a token histogram and a completion marker
(layout in pipelines/token_shards.py). The driver gathers only the shards' counts: it writes
`manifest.json` (every shard with its token and document counts) and `meta.json` (dtype, counts
and the unigram baseline: the cross-entropy a model that knows only token frequencies reaches on
the validation tokens, the bar a trained model must clear, computed from the shards' histograms).

A rerun with the same config and inputs keeps the tokenizer and skips every shard whose marker
names the same source file and tokenizer, so a killed run redoes only unfinished shards; a
changed config or input list trains a new tokenizer and packs everything again.
Tests: tests/test_tokenize.py (`python -m pytest tests/test_tokenize.py -q`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from modeling.tokenizer import Tokenizer, reserved_tokens
from pipelines import token_shards as shards
from pipelines.curation import store
from pipelines.progress import Meter


@dataclass
class TokenizeConfig:
    vocab_size: int = 4096
    min_frequency: int = 2
    sample_chars: int = 50_000_000   # train the BPE merges on at most this much text
    text_column: str = "text"
    chat_tokens: bool = True         # reserve <|system|> <|user|> <|assistant|> <|end|> for chat tuning
    special_tokens: list[str] = field(default_factory=list)   # extra reserved tokens, after the built-in ones

    def __post_init__(self) -> None:
        if not 300 <= self.vocab_size <= 1_000_000:
            raise ValueError(f"vocab_size: must be in [300, 1000000] (256 bytes + specials + merges), got {self.vocab_size}")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency: must be >= 1, got {self.min_frequency}")
        if self.sample_chars <= 0:
            raise ValueError(f"sample_chars: must be positive, got {self.sample_chars}")
        reserved_tokens(self.chat_tokens, self.special_tokens)        # raises "special_tokens: ..."


def _curated_files(curated_dir: str, split: str) -> list[str]:
    files = store.list_files(store.join(curated_dir, split), ".parquet")
    if not files:
        raise FileNotFoundError(f"no parquet shards in {store.join(curated_dir, split)}: run `bespoke curate` first")
    return files


def _iter_text_batches(path: str, column: str, batch_size: int = 512) -> Iterator[list[str]]:
    """A parquet file's texts in row order, a batch at a time (never the whole file in memory)."""
    import pyarrow.parquet as pq

    with store.open_input(path) as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_size, columns=[column]):
            yield [str(t) for t in batch.column(0).to_pylist()]


def _datasets_of(path: str) -> list[str]:
    """The source names (curation's `source` column: the input's `name=`, else its file) in a
    curated file, sorted; [] for a file without that column. Training mixes by these at read time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with store.open_input(path) as fh:
        parquet = pq.ParquetFile(fh)
        if "source" not in parquet.schema_arrow.names:
            return []
        return sorted(str(v) for v in pc.unique(parquet.read(columns=["source"]).column(0)).to_pylist() if v is not None)


def _sample_texts(files: list[str], column: str, limit: int) -> Iterator[str]:
    """Documents of the files in order until `limit` characters (the tokenizer's training sample)."""
    seen = 0
    for path in files:
        for texts in _iter_text_batches(path, column):
            for text in texts:
                yield text
                seen += len(text)
                if seen >= limit:
                    return


def _pack_file(row: dict, tokens_dir: str, tokenizer_json: str, tokenizer_sha: str, column: str,
               dtype: str) -> dict:
    """One Ray task: encode one curated file and write its shard (skipped when already finished)."""
    from tokenizers import Tokenizer as HFTokenizer

    store.configure_io()
    done = shards.finished_shard(tokens_dir, row["split"], row["index"], row["source"], tokenizer_sha)
    if done is not None:
        return {**done, "skipped": True}
    tok = Tokenizer(HFTokenizer.from_str(tokenizer_json))

    def batches():
        for texts in _iter_text_batches(row["source"], column):
            flat = np.fromiter((t for doc in tok.encode_batch(texts) for t in (*doc, tok.eos_id)), dtype=dtype)
            yield flat, sum(len(t) for t in texts)

    record = shards.write_shard(tokens_dir, row["split"], row["index"], batches(), tok.vocab_size, dtype,
                                tok.eos_id, row["source"], tokenizer_sha, _datasets_of(row["source"]))
    return {**record, "skipped": False}


def _pack(files: dict[str, list[str]], tokens_dir: str, tokenizer: Tokenizer, column: str, dtype: str,
          progress: Callable[[str], None] = print) -> list[dict]:
    """Pack every file of every split, one Ray task per file, with one progress line (shards done,
    rate, ETA, tokens) at most every 5 s; returns the shards' records."""
    import ray

    tokenizer_json = tokenizer.hf.to_str()
    sha = shards.sha256(tokenizer_json)
    todo, records = [], []
    for split, paths in files.items():
        for index, source in enumerate(paths):
            done = shards.finished_shard(tokens_dir, split, index, source, sha)
            if done is not None:
                records.append({**done, "skipped": True})
            else:
                todo.append({"split": split, "index": index, "source": source})
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo)).map(
            _pack_file, num_cpus=1, fn_kwargs={"tokens_dir": tokens_dir, "tokenizer_json": tokenizer_json,
                                               "tokenizer_sha": sha, "column": column, "dtype": dtype})
        meter = Meter("tokenize: shards", len(todo), progress, unit="shards")
        tokens = 0

        def note(record: dict) -> str:
            nonlocal tokens
            tokens += record["tokens"]
            return f"{tokens:,} tokens"

        records += meter.track(ds.iter_rows(), note)
    return records


def unigram_cross_entropy(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on `val` of add-one-smoothed unigram frequencies from `train`."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(-log_probs[val].mean())


def _split_meta(records: list[dict]) -> dict:
    return {"tokens": sum(r["tokens"] for r in records), "docs": sum(r["docs"] for r in records),
            "chars": sum(r["chars"] for r in records), "shards": len(records)}


def finish_meta(tokens_dir: str, records: list[dict], vocab_size: int, dtype: str, eos_id: int, **extra) -> dict:
    """Write manifest.json and meta.json from the shards' records (counts only); returns meta."""
    by_split = {split: [r for r in records if r["split"] == split] for split in ("train", "val")}
    shards.write_manifest(tokens_dir, by_split, dtype)
    meta: dict = {"vocab_size": vocab_size, "dtype": dtype, "eos_id": eos_id, "layout": "shards", **extra}
    for split, recs in by_split.items():
        meta[split] = _split_meta(recs)
    if meta["train"]["tokens"] == 0 or meta["val"]["tokens"] == 0:
        raise ValueError("tokenize: the train or val split is empty; curate more data or raise curate.val_fraction")
    counts = {split: shards.split_counts(tokens_dir, recs, vocab_size) for split, recs in by_split.items()}
    meta["unigram_val_loss"] = shards.unigram_from_counts(counts["train"], counts["val"])
    meta["unigram_val_ppl"] = math.exp(meta["unigram_val_loss"])
    if meta["train"]["chars"]:
        meta["chars_per_token"] = meta["train"]["chars"] / meta["train"]["tokens"]
    store.write_bytes(store.join(tokens_dir, "meta.json"), json.dumps(meta, indent=2).encode())
    return meta


def write_packed_tokens(tokens_dir: str | Path, tokenizer: Tokenizer, train_ids, val_ids, n_shards: int = 1,
                        **extra_meta) -> dict:
    """Write the shard layout run_tokenize writes (train/ and val/ shards, manifest.json, meta.json)
    from token ids already in memory (small corpora, tests and benchmarks): the train stream cut
    into `n_shards` equal pieces, val one shard; returns meta."""
    tokens_dir = str(tokens_dir)
    train, val = (np.asarray(ids, dtype=np.uint16) for ids in (train_ids, val_ids))
    write = dict(vocab_size=tokenizer.vocab_size, dtype="uint16", eos_id=tokenizer.eos_id)
    records = [shards.write_shard(tokens_dir, "train", i, [(piece, 0)], **write)
               for i, piece in enumerate(np.array_split(train, n_shards))]
    records.append(shards.write_shard(tokens_dir, "val", 0, [(val, 0)], **write))
    return finish_meta(tokens_dir, records, **write, **extra_meta)


def _plan(cfg: TokenizeConfig, files: dict[str, list[str]]) -> dict:
    return {"config": dataclasses.asdict(cfg), "inputs": files}


def _tokenizer_for(cfg: TokenizeConfig, files: dict[str, list[str]], tokenizer_dir: str | Path, tokens_dir: str,
                   progress: Callable[[str], None]) -> Tokenizer:
    """The run's tokenizer: the saved one when this is a rerun of the same plan, else a new one."""
    plan_path = store.join(tokens_dir, "plan.json")
    plan = _plan(cfg, files)
    if store.exists(plan_path) and (Path(tokenizer_dir) / "tokenizer.json").is_file():
        saved, kept = json.loads(store.read_bytes(plan_path)), Tokenizer.load(tokenizer_dir)
        if saved.get("plan") == plan and saved.get("tokenizer_sha256") == shards.sha256(kept.hf.to_str()):
            progress("tokenize: same config and inputs as the last run: keeping its tokenizer, resuming its shards")
            return kept
    progress(f"tokenize: training byte-level BPE (vocab {cfg.vocab_size}) on up to {cfg.sample_chars:,} chars")
    tokenizer = Tokenizer.train(_sample_texts(files["train"], cfg.text_column, cfg.sample_chars),
                                cfg.vocab_size, cfg.min_frequency, chat=cfg.chat_tokens,
                                extra_special_tokens=cfg.special_tokens)
    tokenizer.save(tokenizer_dir)
    record = {"plan": plan, "tokenizer_sha256": shards.sha256(tokenizer.hf.to_str())}
    store.write_bytes(plan_path, json.dumps(record, indent=1).encode())
    return tokenizer


def run_tokenize(cfg: TokenizeConfig, curated_dir: str | Path, tokenizer_dir: str | Path,
                 tokens_dir: str | Path, progress: Callable[[str], None] = print) -> dict:
    """Train (or, on a rerun, keep) the tokenizer, pack every curated file into its own shard on
    the cluster, and write tokens/manifest.json and tokens/meta.json; returns meta."""
    store.configure_io()
    curated_dir, tokens_dir = str(curated_dir), str(tokens_dir)
    files = {split: _curated_files(curated_dir, split) for split in ("train", "val")}
    tokenizer = _tokenizer_for(cfg, files, tokenizer_dir, tokens_dir, progress)
    dtype = "uint16" if tokenizer.vocab_size <= 2**16 else "uint32"
    progress(f"tokenize: packing {len(files['train'])} train and {len(files['val'])} val files, one shard each")
    records = _pack(files, tokens_dir, tokenizer, cfg.text_column, dtype, progress)
    skipped = sum(r.pop("skipped") for r in records)
    meta = finish_meta(tokens_dir, records, tokenizer.vocab_size, dtype, tokenizer.eos_id,
                       tokenizer_dir=str(tokenizer_dir), shards_skipped=skipped)
    progress(f"tokenize: {meta['train']['tokens']:,} train / {meta['val']['tokens']:,} val tokens in "
             f"{meta['train']['shards']} + {meta['val']['shards']} shards ({skipped} already done), "
             f"unigram baseline val loss {meta['unigram_val_loss']:.3f}")
    return meta
