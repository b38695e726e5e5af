"""Packed token data for training: fixed-length rows cut from the tokenize stage's token shards.

The tokenize stage writes each split as token shards (pipelines/token_shards.py: one flat stream of
token ids per curated file, documents separated by an end-of-text token), locally or on object
storage. A training row is a window of seq_len + 1 tokens (inputs and shifted targets) inside
one shard. Each epoch tiles every shard with windows at o + w * seq_len, the offset o in
[0, seq_len) drawn per epoch from (seed, epoch), so later epochs see other cuts of the same text;
a shard of N tokens holds (N - seq_len) // seq_len windows in every epoch. Validation windows are
fixed: w * seq_len, (N - 1) // seq_len of them.

Order (train.data_order):
  epoch   every epoch reads every one of its windows exactly once, in a seeded
          permutation of all windows of all shards that is new each epoch (a Feistel bijection of [0, n_windows),
          computed per index: no table, so 10^9 windows cost no memory). The k-th row of the
          run's stream is window perm(seed, epoch = k // n)[k % n]; rank r's rows in a step are
          a contiguous slice of that step's rows. The stream position is the number of rows
          consumed, a pure function of (seed, step, world size, grad_accum, batch size), so a
          resumed run reads exactly what an uninterrupted one would. After a change in the number
          of workers the loop starts from the rows the checkpoint consumed (state.json
          "data_rows"), so the new world continues the same stream with no row skipped or repeated;
          with the same global batch it reads the same rows in the same steps.
  random  (default, train.data_order) the earlier sampling with replacement: random token offsets seeded by (seed, step,
          rank, micro) (about a third of the data unseen in one epoch's worth of steps).

Mixing at read time (train.source_weights = {source name: weight}, the names curation gives its
inputs, recorded per shard by tokenize; unnamed sources 1.0): with the epoch order an epoch holds
round(w * n) of the n windows of a shard of weight w (each window floor(w) times, plus a seeded
subset for the fraction, new each epoch), all in one permutation; with the random order a row's
shard is drawn with probability proportional to w x its tokens. Validation is never weighted.
Reweighting thus needs no new curation or tokenize run (curate.source_weights does the same by
copying documents when the curated data is written).

With document_mask=True a row's tokens attend only within their own document: the attention mask
is block-diagonal causal, cut after every end-of-text token (as in Llama 3's pretraining, which
masks attention between documents of one packed sequence). The mask is a dense (B, 1, T, T)
tensor, so on GPU it takes scaled_dot_product_attention off the flash kernel; it is off by default.

Local shards are memory-mapped; shards on s3:// or gs:// are read by byte range, one request per
row (fetched by a few threads per batch), so no rank downloads a whole shard.
Tests: tests/test_token_loader.py, tests/test_training.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipelines.token_shards import open_shards, read_meta, shard_datasets


def iter_jsonl(path: str):
    """(line number, record) for each non-blank line of a jsonl file; a bad line names file:line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


class PackedTokens:
    """The token shards of one split; `batch()` gives training rows, `val_batches()` fixed ones.

    Every training data source offers the same three methods, so the loop never knows which
    objective it trains: batch(...) and val_batches(...) yield tuples of tensors, and
    loss(model, batch, device) returns (mean loss, number of target tokens). This one also
    takes its place in the run's row stream with follow(...) (see the module docstring).
    """

    def __init__(self, tokens_dir: str | Path, split: str, seq_len: int, document_mask: bool = False,
                 order: str = "epoch", source_weights: dict[str, float] | None = None) -> None:
        if order not in ("epoch", "random"):
            raise ValueError(f"train.data_order: must be 'epoch' or 'random', got {order!r}")
        meta = read_meta(str(tokens_dir))
        self.shards = open_shards(str(tokens_dir), split, meta["dtype"])
        # Mixing (train only; validation stays the unweighted held-out sample of every source).
        weights = shard_weights(str(tokens_dir), split, source_weights) if split == "train" else None
        self.seq_len, self.order, self.split = seq_len, order, split
        self.eos_id = meta.get("eos_id") if document_mask else None
        if document_mask and self.eos_id is None:
            raise ValueError(f"train.document_mask: {tokens_dir}/meta.json names no eos_id to split documents at")
        sizes = np.array([s.n_tokens for s in self.shards], dtype=np.int64)
        # Training: window w of a shard covers [o + w*T, o + w*T + T + 1) for the epoch's offset o < T.
        self.window_ends = np.cumsum(np.maximum(sizes - seq_len, 0) // seq_len)
        # An epoch reads round(w * windows) of a shard of weight w: all of them floor(w) times and
        # a seeded subset, new each epoch, for the fraction (`_mixed`). No weights: every one once.
        per_shard = np.diff(self.window_ends, prepend=0)
        self.weighted_ends = None if weights is None else np.cumsum(np.rint(weights * per_shard).astype(np.int64))
        self.n_windows = int((self.window_ends if weights is None else self.weighted_ends)[-1]) if len(sizes) else 0
        self.val_ends = np.cumsum(np.maximum(sizes - 1, 0) // seq_len)       # fixed windows at w*T
        self.start_ends = np.cumsum(np.maximum(sizes - seq_len - 1, 0))   # random order: valid offsets
        # random order with weights: a shard is drawn with probability ~ weight x its valid offsets
        self.draw_ends = None if weights is None else np.cumsum(weights * np.diff(self.start_ends, prepend=0))
        if self.n_windows == 0 or self.start_ends[-1] == 0:
            raise ValueError(f"{split} split holds {int(sizes.sum())} tokens in {len(sizes)} shards, no shard "
                             f"with more than one row of seq_len+1={seq_len + 1}: lower train.seq_len or curate more text")
        self.rows_per_step = None    # until follow(): one rank, no accumulation, the first batch's size
        self._pool = None

    def __getstate__(self):
        return {**self.__dict__, "_pool": None}    # threads do not pickle; made again when needed

    # ------------------------------------------------------------ the row stream

    def follow(self, world: int, grad_accum: int, batch_size: int, step0: int = 0, rows0: int | None = None) -> None:
        """Rows per optimizer step = world * grad_accum * batch_size, from step `step0`, at which
        `rows0` rows of the stream were consumed (None: step0 * rows per step, a run that never
        changed shape)."""
        self.world, self.grad_accum, self.batch_size = world, grad_accum, batch_size
        self.rows_per_step = world * grad_accum * batch_size
        self.step0 = step0
        self.rows0 = step0 * self.rows_per_step if rows0 is None else rows0

    def rows_before(self, step: int) -> int:
        """Rows of the stream consumed by the steps before `step` (what a checkpoint records)."""
        return self.rows0 + (step - self.step0) * self.rows_per_step

    def stream_rows(self, step: int, rank: int, micro: int, batch_size: int) -> np.ndarray:
        """Stream indices of rank `rank`'s micro-batch `micro` at `step`: micro-batches in order,
        ranks side by side within one."""
        if self.rows_per_step is None:
            self.follow(world=1, grad_accum=1, batch_size=batch_size)
        first = self.rows_before(step) + (micro * self.world + rank) * batch_size
        return np.arange(first, first + batch_size, dtype=np.int64)

    def windows_of(self, seed: int, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard, first token) each stream index reads: window perm(seed, epoch)[k % n] of epoch
        k // n's tiling."""
        epochs, pos = np.divmod(stream, self.n_windows)
        windows, offsets = np.empty_like(pos), np.empty_like(pos)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            windows[sel] = permute(pos[sel], self.n_windows, seed, int(epoch))
            offsets[sel] = self.epoch_offset(seed, int(epoch))
        if self.weighted_ends is not None:
            windows = self._mixed(windows, epochs, seed)
        shard, start = self._window_starts(windows, self.window_ends)
        return shard, start + offsets

    def _mixed(self, virtual: np.ndarray, epochs: np.ndarray, seed: int) -> np.ndarray:
        """Windows of the weighted epoch -> windows of the shards: virtual window j of shard i
        (of n_i real ones) is real window j mod n_i in the complete repeats (j < floor(w) n_i)
        and, in the last partial repeat, a seeded random window that no other j of that repeat
        takes (a per-(epoch, shard) permutation), so w = 0.5 reads a different half each epoch."""
        shard = np.searchsorted(self.weighted_ends, virtual, side="right")
        j = virtual - np.where(shard > 0, self.weighted_ends[shard - 1], 0)
        real = np.diff(self.window_ends, prepend=0)[shard]                  # n_i
        repeat, local = np.divmod(j, np.maximum(real, 1))
        wanted = np.diff(self.weighted_ends, prepend=0)[shard]              # round(w_i n_i)
        partial = (repeat + 1) * real > wanted
        for i, r, e in set(zip(shard[partial].tolist(), repeat[partial].tolist(), epochs[partial].tolist())):
            sel = partial & (shard == i) & (repeat == r) & (epochs == e)
            key = int(np.random.SeedSequence([e, i, r, 0x313]).generate_state(1)[0])   # per (epoch, shard, repeat)
            local[sel] = permute(local[sel], int(real[sel][0]), seed, key)
        return np.where(shard > 0, self.window_ends[shard - 1], 0) + local

    def epoch_offset(self, seed: int, epoch: int) -> int:
        """Where an epoch's tiling of every shard starts, in [0, seq_len)."""
        return int(np.random.SeedSequence([seed, epoch, 0x0FF5E7]).generate_state(1)[0] % self.seq_len)

    # ------------------------------------------------------------ reading

    def _window_starts(self, windows: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard, token offset) of global window indices, given the cumulative windows per shard."""
        shard = np.searchsorted(ends, windows, side="right")
        before = np.where(shard > 0, ends[shard - 1], 0)
        return shard, (windows - before) * self.seq_len

    def _read(self, shard_ids: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.seq_len + 1
        jobs = list(zip(shard_ids.tolist(), starts.tolist()))
        if any(self.shards[i].remote for i, _ in jobs):     # range reads: overlap their latency
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(8)
            parts = list(self._pool.map(lambda job: self.shards[job[0]].read(job[1], n), jobs))
        else:
            parts = [self.shards[i].read(s, n) for i, s in jobs]
        rows = torch.from_numpy(np.stack(parts).astype(np.int64))    # (B, T+1)
        return rows[:, :-1], rows[:, 1:]                             # inputs (B, T), targets (B, T)

    def loss(self, model, batch, device, loss_fn=None) -> tuple[torch.Tensor, int]:
        """Next-token cross-entropy of a (inputs, targets) batch."""
        from modeling.transformer import lm_loss

        loss_fn = loss_fn or lm_loss   # the parallelize step passes a compiled one with train.parallel.compile
        x, y = (t.to(device) for t in batch)
        if self.eos_id is None:
            return loss_fn(model(x), y), y.numel()
        return loss_fn(model(x, attn_mask=document_causal_mask(x, self.eos_id)), y), y.numel()

    def batch(self, batch_size: int, seed: int, step: int, rank: int, micro: int = 0):
        """The rows of (step, rank, micro): the next slice of the epoch-exact stream, or with
        order="random" random windows seeded by (seed, step, rank, micro)."""
        if self.order == "random":
            rng = np.random.default_rng([seed, step, rank, micro])
            if self.draw_ends is not None:
                shard = np.searchsorted(self.draw_ends, rng.random(batch_size) * self.draw_ends[-1], side="right")
                valid = np.diff(self.start_ends, prepend=0)[shard]
                return self._read(shard, (rng.random(batch_size) * valid).astype(np.int64))
            offsets = rng.integers(0, int(self.start_ends[-1]), size=batch_size)
            shard = np.searchsorted(self.start_ends, offsets, side="right")
            return self._read(shard, offsets - np.where(shard > 0, self.start_ends[shard - 1], 0))
        return self._read(*self.windows_of(seed, self.stream_rows(step, rank, micro, batch_size)))

    def val_batches(self, batch_size: int, max_tokens: int, rank: int, world: int):
        """The first windows of the split (shards in order) covering max_tokens, dealt round-robin
        to ranks. The window set depends only on seq_len and max_tokens, never on batch size or
        world size."""
        n = min(int(self.val_ends[-1]), max(1, max_tokens // self.seq_len))
        mine = np.arange(rank, n, world, dtype=np.int64)
        for i in range(0, len(mine), batch_size):
            yield self._read(*self._window_starts(mine[i:i + batch_size], self.val_ends))


def shard_weights(tokens_dir: str, split: str, source_weights: dict[str, float] | None) -> np.ndarray | None:
    """Each shard's mixing weight from train.source_weights ({source name: weight}, unnamed
    sources 1.0); None when no weight differs from 1. Errors name the fix."""
    if not source_weights or all(w == 1 for w in source_weights.values()):
        return None
    names = shard_datasets(tokens_dir, split)
    if names is None:
        raise ValueError(f"train.source_weights: {tokens_dir}/manifest.json does not record the source names of "
                         "its shards (packed by an older version): run `bespoke tokenize` again")
    known = sorted({n for shard in names for n in shard})
    if not known:
        raise ValueError(f"train.source_weights: the {split} shards in {tokens_dir} record no source names "
                         "(curated files without a `source` column); name the inputs (`name=path`) and curate again")
    unknown = sorted(set(source_weights) - set(known))
    if unknown:
        raise ValueError(f"train.source_weights: no {split} shard holds source {unknown[0]!r}; the sources are {known}")
    weights = []
    for shard in names:
        mine = {source_weights.get(n, 1.0) for n in shard}
        if len(mine) > 1:
            raise ValueError(f"train.source_weights: a shard holds sources {shard} with different weights; "
                             "weights apply to whole shards (one curated input file each)")
        weights.append(mine.pop() if mine else 1.0)
    if not any(w > 0 for w in weights):
        raise ValueError("train.source_weights: every source has weight 0; nothing is left to train on")
    return np.array(weights, dtype=np.float64)


def permute(index: np.ndarray, n: int, seed: int, epoch: int, rounds: int = 6) -> np.ndarray:
    """A seeded bijection of [0, n) applied to `index`: a balanced Feistel network on the
    smallest even number of bits covering n, with cycle walking back into [0, n). Pure (the same
    arguments always give the same permutation), vectorised, O(1) memory in n."""
    index = np.asarray(index, dtype=np.uint64)
    half = max(1, (max(int(n) - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(rounds, dtype=np.uint64)
    out = _feistel(index, keys, half, mask)
    outside = out >= n
    while outside.any():                # each walk stays on the cycle, which returns into [0, n)
        out[outside] = _feistel(out[outside], keys, half, mask)
        outside = out >= n
    return out.astype(np.int64)


def _feistel(x: np.ndarray, keys: np.ndarray, half: int, mask: np.uint64) -> np.ndarray:
    shift = np.uint64(half)
    left, right = x >> shift, x & mask
    with np.errstate(over="ignore"):
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
    return (left << shift) | right


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread 64-bit hash (uint64 arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def document_causal_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """tokens (B, T) -> (B, 1, T, T) bool, True where query i may attend to key j: j <= i and both
    in the same document. An end-of-text token closes its document; the next token opens a new one."""
    T = tokens.shape[1]
    is_eos = (tokens == eos_id).long()
    doc = is_eos.cumsum(-1) - is_eos                       # (B, T) document index, EOS in the one it ends
    same_doc = doc[:, :, None] == doc[:, None, :]          # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    return (same_doc & causal)[:, None]                    # (B, 1, T, T)
