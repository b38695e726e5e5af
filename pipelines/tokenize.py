"""Tokenize stage: train a byte-level BPE tokenizer on curated text and pack the token stream.

    bespoke tokenize --config configs/demo.yaml        # reads runs/<name>/curated, writes tokenizer/ + tokens/

Reads the curated `train/` and `val/` parquet shards with Ray Data, learns BPE merges on a bounded
sample of the training text, encodes every document in parallel (`map_batches`), and packs each
split into one flat token file (`train.bin`, `val.bin`): documents are concatenated with an
end-of-text token between them, so the training loader cuts fixed-length rows with no padding.
`meta.json` records dtype, counts and the unigram baseline: the cross-entropy a model that knows
only token frequencies would reach on the validation tokens, the bar a trained model must clear.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from modeling.tokenizer import Tokenizer, reserved_tokens


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


def _read_split(curated_dir: Path, split: str):
    import ray

    files = sorted(str(p) for p in (curated_dir / split).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet shards in {curated_dir / split}: run `bespoke curate` first")
    return ray.data.read_parquet(files)


def _sample_texts(ds, column: str, limit: int) -> Iterator[str]:
    seen = 0
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        for text in batch[column]:
            yield str(text)
            seen += len(text)
            if seen >= limit:
                return


class _Encoder:
    """A Ray Data callable: encode a batch of documents into one flat, eos-separated token array."""

    def __init__(self, tokenizer_json: str, column: str, dtype: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.tok = Tokenizer(HFTokenizer.from_str(tokenizer_json))
        self.column, self.dtype = column, dtype

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch[self.column]]
        ids = self.tok.encode_batch(texts)
        eos = self.tok.eos_id
        flat = np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=self.dtype)
        return {"tokens": [flat], "docs": [len(ids)], "chars": [sum(len(t) for t in texts)]}


def _pack_split(ds, tokenizer: Tokenizer, column: str, out_path: Path, dtype: str) -> dict:
    """Encode a split on the cluster and append its token arrays, in order, to one .bin file."""
    import ray

    encoded = ds.map_batches(
        _Encoder, batch_size=64, batch_format="numpy",
        fn_constructor_kwargs={"tokenizer_json": tokenizer.hf.to_str(), "column": column, "dtype": dtype},
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2))
    n_tokens = n_docs = n_chars = 0
    with open(out_path, "wb") as fh:
        for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            for tokens, docs, chars in zip(batch["tokens"], batch["docs"], batch["chars"]):
                fh.write(np.asarray(tokens, dtype=dtype).tobytes())
                n_tokens += len(tokens)
                n_docs += int(docs)
                n_chars += int(chars)
    return {"tokens": n_tokens, "docs": n_docs, "chars": n_chars}


def unigram_cross_entropy(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on `val` of add-one-smoothed unigram frequencies from `train`."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(-log_probs[val].mean())


def write_packed_tokens(tokens_dir: str | Path, tokenizer: Tokenizer, train_ids, val_ids, **extra_meta) -> dict:
    """Write train.bin, val.bin and meta.json as run_tokenize does, from token ids already in memory
    (small corpora, tests and benchmarks); returns meta."""
    tokens_dir = Path(tokens_dir)
    tokens_dir.mkdir(parents=True, exist_ok=True)
    train, val = (np.asarray(ids, dtype=np.uint16) for ids in (train_ids, val_ids))
    train.tofile(tokens_dir / "train.bin")
    val.tofile(tokens_dir / "val.bin")
    meta = {"vocab_size": tokenizer.vocab_size, "dtype": "uint16", "eos_id": tokenizer.eos_id,
            "unigram_val_loss": unigram_cross_entropy(train, val, tokenizer.vocab_size), **extra_meta}
    (tokens_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def run_tokenize(cfg: TokenizeConfig, curated_dir: str | Path, tokenizer_dir: str | Path,
                 tokens_dir: str | Path, progress: Callable[[str], None] = print) -> dict:
    """Train the tokenizer, pack train/val token files and write tokens/meta.json; returns meta."""
    curated_dir, tokens_dir = Path(curated_dir), Path(tokens_dir)
    tokens_dir.mkdir(parents=True, exist_ok=True)
    train_ds, val_ds = _read_split(curated_dir, "train"), _read_split(curated_dir, "val")

    progress(f"tokenize: training byte-level BPE (vocab {cfg.vocab_size}) on up to {cfg.sample_chars:,} chars")
    tokenizer = Tokenizer.train(_sample_texts(train_ds, cfg.text_column, cfg.sample_chars),
                                cfg.vocab_size, cfg.min_frequency, chat=cfg.chat_tokens,
                                extra_special_tokens=cfg.special_tokens)
    tokenizer.save(tokenizer_dir)
    dtype = "uint16" if tokenizer.vocab_size <= 2**16 else "uint32"

    meta: dict = {"vocab_size": tokenizer.vocab_size, "dtype": dtype, "eos_id": tokenizer.eos_id,
                  "tokenizer_dir": str(tokenizer_dir)}
    for split, ds in (("train", train_ds), ("val", val_ds)):
        progress(f"tokenize: encoding and packing the {split} split")
        meta[split] = _pack_split(ds, tokenizer, cfg.text_column, tokens_dir / f"{split}.bin", dtype)
    train_tokens = np.fromfile(tokens_dir / "train.bin", dtype=dtype)
    val_tokens = np.fromfile(tokens_dir / "val.bin", dtype=dtype)
    if len(train_tokens) == 0 or len(val_tokens) == 0:
        raise ValueError("tokenize: the train or val split is empty; curate more data or raise curate.val_fraction")
    meta["unigram_val_loss"] = unigram_cross_entropy(train_tokens, val_tokens, tokenizer.vocab_size)
    meta["unigram_val_ppl"] = math.exp(meta["unigram_val_loss"])
    meta["chars_per_token"] = meta["train"]["chars"] / meta["train"]["tokens"]
    (tokens_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    progress(f"tokenize: {meta['train']['tokens']:,} train / {meta['val']['tokens']:,} val tokens, "
             f"unigram baseline val loss {meta['unigram_val_loss']:.3f}")
    return meta

