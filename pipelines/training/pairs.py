"""(source, target) pairs for the encoder-decoder: padded batches with padding masks, loss on the target only.

    meta = prepare_pairs(PairsConfig(paths=["pairs.jsonl"]), TokenizeConfig(), "runs/s2s/tokenizer", "runs/s2s/tokens")
    data = PairData(meta["pairs"], "train", seq_len=64, tokenizer_dir="runs/s2s/tokenizer")
    batch = data.batch(batch_size=16, seed=0, step=3, rank=0)   # (src, src_mask, tgt_in, targets)
    loss, n_target_tokens = data.loss(model, batch, "cpu")

`bespoke pretrain --config configs/seq2seq.yaml` (model.arch: encoder_decoder) runs `prepare_pairs`
when the run has no tokens/meta.json: it trains the tokenizer on the pairs' text if the run has
none, and writes tokens/meta.json with kind "pairs", which `sources.open_split` reads, so the same
Ray Train loop, checkpoints and Tune search train the encoder-decoder. Pairs are tokenized on
each worker when it opens its split (no packed token file: the pairs stay in their jsonl).

Formats (pairs.format):
  jsonl  one JSON object a line, the texts under pairs.source_key / pairs.target_key
  lines  plain text: each non-empty line is a source and the next non-empty line its target
Each row: the source ids (padded on the right, src_mask False there); the decoder input
`<|bos|> target` and the targets `target <|endoftext|>`, -100 at padding, so the loss counts
target tokens only. Sources and targets are cut to train.seq_len tokens. Which pairs a rank reads
is a function of (seed, step, rank, micro), like PackedTokens, so a resumed run reads what an
uninterrupted one would. The val split is a fixed, seeded share of the pairs.
"""
from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from modeling.tokenizer import Tokenizer
from pipelines.tokenize import unigram_cross_entropy
from pipelines.training.data import iter_jsonl
from pipelines.training.instructions import split_indices

FORMATS = ("jsonl", "lines")


@dataclass
class PairsConfig:
    """Where an encoder_decoder run reads its (source, target) pairs."""

    paths: list[str] = field(default_factory=list)   # files or globs; needed when model.arch is encoder_decoder
    format: str = "jsonl"                            # jsonl | lines (see pipelines/training/pairs.py)
    source_key: str = "source"
    target_key: str = "target"
    val_fraction: float = 0.05                       # seeded share of the pairs held out for val_loss
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format: must be one of {list(FORMATS)}, got {self.format!r}")
        if not self.source_key or not self.target_key or self.source_key == self.target_key:
            raise ValueError(f"source_key: source_key and target_key must be two different non-empty keys, "
                             f"got {self.source_key!r} and {self.target_key!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction: must be in (0, 1), got {self.val_fraction}")


def expand_paths(patterns: list[str]) -> list[str]:
    """Absolute paths of the files named by paths or globs; a pattern matching nothing is an error."""
    if not patterns:
        raise ValueError("pairs.paths: model.arch is encoder_decoder but no pair files are configured")
    files: list[str] = []
    for pattern in patterns:
        matched = [m for m in sorted(glob.glob(pattern)) if Path(m).is_file()]
        if not matched:
            raise FileNotFoundError(f"pairs.paths: {pattern!r} matches no file")
        files += [str(Path(m).resolve()) for m in matched]
    return files


def read_pairs(paths: list[str], fmt: str = "jsonl", source_key: str = "source",
               target_key: str = "target") -> list[tuple[str, str]]:
    """Every (source, target) of the files; ValueError naming file:line for a malformed record."""
    pairs: list[tuple[str, str]] = []
    for path in paths:
        if fmt == "lines":
            with open(path, encoding="utf-8") as fh:
                lines = [line.rstrip("\n") for line in fh if line.strip()]
            pairs += list(zip(lines[:-1], lines[1:]))
            continue
        for n, record in iter_jsonl(path):
            if not isinstance(record, dict) or not all(isinstance(record.get(k), str)
                                                       for k in (source_key, target_key)):
                raise ValueError(f"{path}:{n}: expected string fields {source_key!r} and {target_key!r} "
                                 f"(pairs.source_key / pairs.target_key), got {record!r:.200}")
            if not record[source_key]:
                raise ValueError(f"{path}:{n}: empty {source_key!r}: the encoder needs at least one token")
            pairs.append((record[source_key], record[target_key]))
    if len(pairs) < 2:
        raise ValueError(f"pairs.paths: {len(pairs)} pair(s) in {paths}; need at least 2 (train and val)")
    return pairs


def prepare_pairs(cfg: PairsConfig, tokenize_cfg, tokenizer_dir: str | Path, tokens_dir: str | Path,
                  progress: Callable[[str], None] = print) -> dict:
    """Train the tokenizer on the pairs' text unless `tokenizer_dir` has one; write tokens/meta.json
    (kind "pairs") naming the pair files, for `sources.open_split`. Returns the meta."""
    paths = expand_paths(cfg.paths)
    pairs = read_pairs(paths, cfg.format, cfg.source_key, cfg.target_key)
    tokenizer_dir, tokens_dir = Path(tokenizer_dir), Path(tokens_dir)
    if (tokenizer_dir / "tokenizer.json").is_file():
        tok = Tokenizer.load(tokenizer_dir)
        progress(f"pairs: using the run's tokenizer in {tokenizer_dir}")
    else:
        progress(f"pairs: training byte-level BPE (vocab {tokenize_cfg.vocab_size}) on {len(pairs):,} pairs")
        tok = Tokenizer.train(_texts(pairs), tokenize_cfg.vocab_size, tokenize_cfg.min_frequency,
                              chat=tokenize_cfg.chat_tokens, extra_special_tokens=tokenize_cfg.special_tokens)
        tok.save(tokenizer_dir)
    spec = {"paths": paths, "format": cfg.format, "source_key": cfg.source_key, "target_key": cfg.target_key,
            "val_fraction": cfg.val_fraction, "seed": cfg.seed}
    meta = {"kind": "pairs", "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
            "bos_id": tok.bos_id, "tokenizer_dir": str(tokenizer_dir.resolve()), "pairs": spec}
    # Counts and the unigram baseline over target tokens (what the loss is measured on), in the
    # fields the packed meta has, so the run report reads either.
    targets = {}
    for split in ("train", "val"):
        chosen = split_indices(len(pairs), split, cfg.val_fraction, cfg.seed)
        ids = tok.encode_batch([pairs[i][1] for i in chosen])
        targets[split] = np.fromiter((t for row in ids for t in (*row, tok.eos_id)), dtype=np.int64)
        meta[split] = {"pairs": len(chosen), "docs": len(chosen), "tokens": len(targets[split]),
                       "chars": sum(len(pairs[i][1]) for i in chosen)}
    meta["unigram_val_loss"] = unigram_cross_entropy(targets["train"], targets["val"], tok.vocab_size)
    meta["unigram_val_ppl"] = math.exp(meta["unigram_val_loss"])
    meta["chars_per_token"] = meta["train"]["chars"] / max(1, meta["train"]["tokens"])
    tokens_dir.mkdir(parents=True, exist_ok=True)
    (tokens_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    progress(f"pairs: {meta['train']['pairs']:,} train / {meta['val']['pairs']:,} val pairs from {len(paths)} file(s); "
             f"target-token unigram baseline val loss {meta['unigram_val_loss']:.3f}")
    return meta


def _texts(pairs: list[tuple[str, str]]) -> Iterator[str]:
    for source, target in pairs:
        yield source
        yield target


class PairData:
    """Tokenized pairs of one split; the batch/val_batches/loss interface of PackedTokens."""

    def __init__(self, spec: dict, split: str, seq_len: int, tokenizer_dir: str | Path) -> None:
        tok = Tokenizer.load(tokenizer_dir)
        self.pad_id = tok.pad_id
        pairs = read_pairs(spec["paths"], spec["format"], spec["source_key"], spec["target_key"])
        chosen = split_indices(len(pairs), split, spec["val_fraction"], spec["seed"])
        sources = tok.encode_batch([pairs[i][0] for i in chosen])
        targets = tok.encode_batch([pairs[i][1] for i in chosen])
        # (source ids, [bos] + target + [eos]) per pair, the target side at most seq_len + 1 tokens.
        self.examples = [(np.asarray(s[:seq_len]), np.asarray(([tok.bos_id, *t, tok.eos_id])[:seq_len + 1]))
                         for s, t in zip(sources, targets)]

    def loss(self, model, batch, device, loss_fn=None) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over target tokens (padding excluded), and how many there were."""
        from modeling.transformer import lm_loss

        loss_fn = loss_fn or lm_loss   # the parallelize step passes a compiled one with train.parallel.compile
        src, src_mask, tgt_in, y = (t.to(device) for t in batch)
        return loss_fn(model(src, tgt_in, src_mask), y), int((y != -100).sum())

    def _padded(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
        """Right-pad to the longest source and target of the batch. Target padding needs no mask:
        causal attention never looks right, and its targets are -100."""
        S = max(len(s) for s, _ in rows)
        T = max(len(t) for _, t in rows) - 1
        src = np.full((len(rows), S), self.pad_id, dtype=np.int64)
        tgt_in = np.full((len(rows), T), self.pad_id, dtype=np.int64)
        y = np.full((len(rows), T), -100, dtype=np.int64)
        for r, (s, t) in enumerate(rows):
            src[r, :len(s)] = s
            tgt_in[r, :len(t) - 1], y[r, :len(t) - 1] = t[:-1], t[1:]
        src_mask = np.arange(S)[None, :] < np.array([len(s) for s, _ in rows])[:, None]
        # src (B, S), src_mask (B, S) True at real tokens, tgt_in (B, T), targets (B, T)
        return torch.from_numpy(src), torch.from_numpy(src_mask), torch.from_numpy(tgt_in), torch.from_numpy(y)

    def batch(self, batch_size: int, seed: int, step: int, rank: int, micro: int = 0):
        """Random pairs, seeded by (seed, step, rank, micro): resumable and different per rank."""
        rng = np.random.default_rng([seed, step, rank, micro])
        return self._padded([self.examples[i] for i in rng.integers(0, len(self.examples), size=batch_size)])

    def val_batches(self, batch_size: int, max_tokens: int, rank: int, world: int):
        """The first val pairs holding up to max_tokens target tokens (at least one pair), dealt
        round-robin to ranks: the same set for any batch size or worker count."""
        lengths = np.cumsum([len(t) - 1 for _, t in self.examples])
        n = max(1, int(np.searchsorted(lengths, max_tokens, side="right")))
        mine = list(range(rank, n, world))
        for i in range(0, len(mine), batch_size):
            yield self._padded([self.examples[j] for j in mine[i:i + batch_size]])
