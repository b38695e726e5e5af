"""Packed token data for training: fixed-length rows cut from one memory-mapped token stream.

The tokenize stage writes each split as one flat array of token ids (documents separated by an
end-of-text token). Training rows are windows of seq_len + 1 tokens (inputs and shifted targets).
Which rows a rank reads at a step is a pure function of (seed, step, rank), so a resumed run reads
exactly what an uninterrupted run would have read: the data position is just the step number.

With document_mask=True a row's tokens attend only within their own document: the attention mask
is block-diagonal causal, cut after every end-of-text token (as in Llama 3's pretraining, which
masks attention between documents of one packed sequence). The mask is a dense (B, 1, T, T)
tensor, so on GPU it takes scaled_dot_product_attention off the flash kernel; it is off by default.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


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
    """A memory-mapped token file; `batch()` draws training rows, `val_batches()` fixed ones.

    Every training data source offers the same three methods, so the loop never knows which
    objective it trains: batch(...) and val_batches(...) yield tuples of tensors, and
    loss(model, batch, device) returns (mean loss, number of target tokens).
    """

    def __init__(self, tokens_dir: str | Path, split: str, seq_len: int, document_mask: bool = False) -> None:
        meta = json.loads((Path(tokens_dir) / "meta.json").read_text())
        self.tokens = np.memmap(Path(tokens_dir) / f"{split}.bin", dtype=meta["dtype"], mode="r")
        self.seq_len = seq_len
        self.eos_id = meta.get("eos_id") if document_mask else None
        if document_mask and self.eos_id is None:
            raise ValueError(f"train.document_mask: {tokens_dir}/meta.json names no eos_id to split documents at")
        if len(self.tokens) < seq_len + 2:
            raise ValueError(f"{split}.bin holds {len(self.tokens)} tokens, fewer than one row of "
                             f"seq_len+1={seq_len + 1}: lower train.seq_len or curate more text")

    def _rows(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([self.tokens[s:s + self.seq_len + 1] for s in starts]).astype(np.int64)
        rows = torch.from_numpy(rows)                            # (B, T+1)
        return rows[:, :-1], rows[:, 1:]                         # inputs (B, T), targets (B, T)

    def loss(self, model, batch, device, loss_fn=None) -> tuple[torch.Tensor, int]:
        """Next-token cross-entropy of a (inputs, targets) batch."""
        from modeling.transformer import lm_loss

        loss_fn = loss_fn or lm_loss   # the parallelize step passes a compiled one with train.parallel.compile
        x, y = (t.to(device) for t in batch)
        if self.eos_id is None:
            return loss_fn(model(x), y), y.numel()
        return loss_fn(model(x, attn_mask=document_causal_mask(x, self.eos_id)), y), y.numel()

    def batch(self, batch_size: int, seed: int, step: int, rank: int, micro: int = 0):
        """Random windows, seeded by (seed, step, rank, micro): resumable and different per rank."""
        rng = np.random.default_rng([seed, step, rank, micro])
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=batch_size)
        return self._rows(starts)

    def val_batches(self, batch_size: int, max_tokens: int, rank: int, world: int):
        """The first max_tokens of the split as non-overlapping windows, dealt round-robin to ranks.

        The window set depends only on seq_len and max_tokens, never on batch size or world size.
        """
        n_windows = min((len(self.tokens) - 1) // self.seq_len, max(1, max_tokens // self.seq_len))
        mine = np.arange(rank, n_windows, world) * self.seq_len
        for i in range(0, len(mine), batch_size):
            yield self._rows(mine[i:i + batch_size])


def document_causal_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """tokens (B, T) -> (B, 1, T, T) bool, True where query i may attend to key j: j <= i and both
    in the same document. An end-of-text token closes its document; the next token opens a new one."""
    T = tokens.shape[1]
    is_eos = (tokens == eos_id).long()
    doc = is_eos.cumsum(-1) - is_eos                       # (B, T) document index, EOS in the one it ends
    same_doc = doc[:, :, None] == doc[:, None, :]          # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    return (same_doc & causal)[:, None]                    # (B, 1, T, T)
