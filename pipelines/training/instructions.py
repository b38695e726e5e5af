"""Instruction data for fine-tuning: chat-formatted examples with the loss on the responses only.

    data = InstructionData(["chat.jsonl"], "train", seq_len=256, tokenizer_dir="runs/demo/train/.../model")
    x, y = data.batch(batch_size=8, seed=0, step=3, rank=0)     # y is -100 except on response tokens
    loss, n_response_tokens = data.loss(model, (x, y), "cpu")

Each jsonl line is one example, in either form (format "auto" accepts both, line by line):
    {"prompt": "...", "response": "...", "system": "..."}                 (system optional)
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
Examples are formatted with the tokenizer's chat tokens (`<|role|>content<|end|>`, see
modeling/tokenizer.py). Targets are -100 (ignored by lm_loss) everywhere except assistant content
and its `<|end|>`, so the model learns to answer, not to write prompts. Rows are right-padded (a
causal model never attends to later padding) or, with packing, whole examples laid end to end.
Which examples a rank reads is a function of (seed, step, rank, micro), like PackedTokens, so a
resumed run reads what an uninterrupted one would. The val split is a fixed, seeded share of the
examples; the same examples for every batch size and worker count.
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch

from modeling.tokenizer import CHAT_ROLES, Tokenizer
from pipelines.training.data import iter_jsonl

FORMATS = ("auto", "prompt_response", "messages")


def expand_paths(patterns: list[str]) -> list[str]:
    """Files named by paths or globs, in a stable order; a pattern matching nothing is an error."""
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matched = [m for m in matched if Path(m).is_file()]
        if not matched:
            raise FileNotFoundError(f"finetune.data: {pattern!r} matches no file")
        files += [str(Path(m).resolve()) for m in matched]
    return files


def _to_messages(record, fmt: str, where: str) -> list[dict]:
    """One jsonl record as a list of chat messages; ValueError naming file:line if malformed."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record and fmt in ("auto", "messages"):
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: 'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"{where}: messages[{i}] must be {{'role': one of {sorted(CHAT_ROLES)}, "
                                 f"'content': str}}, got {m!r}")
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{where}: no assistant message, so nothing to train on")
        return messages
    if "prompt" in record and fmt in ("auto", "prompt_response"):
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("response"), str):
            raise ValueError(f"{where}: 'prompt' and 'response' must both be strings")
        system = [{"role": "system", "content": record["system"]}] if record.get("system") else []
        return system + [{"role": "user", "content": record["prompt"]},
                         {"role": "assistant", "content": record["response"]}]
    wanted = {"auto": "'prompt'/'response' or 'messages'", "prompt_response": "'prompt'/'response'",
              "messages": "'messages'"}[fmt]
    raise ValueError(f"{where}: expected keys {wanted} (finetune.format={fmt!r}), got {sorted(record)}")


def read_examples(paths: list[str], fmt: str = "auto") -> list[list[dict]]:
    """Every example of the jsonl files as chat messages; blank lines are skipped."""
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {list(FORMATS)}, got {fmt!r}")
    examples = []
    for path in paths:
        for n, record in iter_jsonl(path):
            examples.append(_to_messages(record, fmt, f"{path}:{n}"))
    if len(examples) < 2:
        raise ValueError(f"finetune.data: {len(examples)} example(s) in {paths}; need at least 2 (train and val)")
    return examples


def split_indices(n: int, split: str, val_fraction: float, seed: int) -> np.ndarray:
    """The examples of `split`: a seeded permutation, its first share is val (at least one)."""
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return np.sort(order[:n_val] if split == "val" else order[n_val:])


class InstructionData:
    """Chat examples tokenized once; the same batch/val_batches/loss interface as PackedTokens."""

    def __init__(self, paths: list[str], split: str, seq_len: int, tokenizer_dir: str | Path,
                 fmt: str = "auto", val_fraction: float = 0.1, seed: int = 0, packing: bool = False) -> None:
        tok = Tokenizer.load(tokenizer_dir)
        if not tok.has_chat:
            raise ValueError(f"the tokenizer in {tokenizer_dir} has no chat tokens ({', '.join(CHAT_ROLES.values())}, "
                             "<|end|>), so instruction data cannot be formatted: retrain the tokenizer with "
                             "`bespoke tokenize` (tokenize.chat_tokens: true) and pretrain the base model on it")
        self.seq_len, self.packing, self.pad_id = seq_len, packing, tok.pad_id
        examples = read_examples(paths, fmt)
        chosen = split_indices(len(examples), split, val_fraction, seed)
        # (ids, targets) per example, at most seq_len + 1 tokens (inputs and shifted targets).
        self.examples: list[tuple[np.ndarray, np.ndarray]] = []
        for i in chosen:
            ids, mask = tok.encode_chat(examples[i])
            ids, mask = np.asarray(ids[:seq_len + 1]), np.asarray(mask[:seq_len + 1])
            targets = np.where(mask, ids, -100)
            if (targets[1:] != -100).any():   # a prompt longer than seq_len leaves nothing to learn
                self.examples.append((ids, targets))
        self.dropped = len(chosen) - len(self.examples)
        if not self.examples:
            raise ValueError(f"finetune.data: no {split} example has response tokens within "
                             f"train.seq_len={seq_len}; raise seq_len or shorten the prompts")

    def loss(self, model, batch, device, loss_fn=None) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over response tokens only, and how many there were."""
        from modeling.transformer import lm_loss

        loss_fn = loss_fn or lm_loss   # the parallelize step passes a compiled one with train.parallel.compile
        x, y = (t.to(device) for t in batch)
        return loss_fn(model(x), y), int((y != -100).sum())

    def _padded(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad (ids, targets) rows to the longest; inputs (B, T) and targets (B, T)."""
        width = max(len(ids) for ids, _ in rows) - 1
        x = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        y = np.full((len(rows), width), -100, dtype=np.int64)
        for r, (ids, targets) in enumerate(rows):
            x[r, :len(ids) - 1], y[r, :len(ids) - 1] = ids[:-1], targets[1:]
        return torch.from_numpy(x), torch.from_numpy(y)

    def _packed_row(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random whole examples end to end until seq_len + 1 tokens; the last one is cut."""
        ids, targets, length = [], [], 0
        while length < self.seq_len + 1:
            e_ids, e_targets = self.examples[rng.integers(len(self.examples))]
            ids.append(e_ids), targets.append(e_targets)
            length += len(e_ids)
        return np.concatenate(ids)[:self.seq_len + 1], np.concatenate(targets)[:self.seq_len + 1]

    def batch(self, batch_size: int, seed: int, step: int, rank: int, micro: int = 0):
        """Random examples (or packed rows), seeded by (seed, step, rank, micro): resumable."""
        rng = np.random.default_rng([seed, step, rank, micro])
        if self.packing:
            return self._padded([self._packed_row(rng) for _ in range(batch_size)])
        picks = rng.integers(0, len(self.examples), size=batch_size)
        return self._padded([self.examples[i] for i in picks])

    def val_batches(self, batch_size: int, max_tokens: int, rank: int, world: int):
        """The first val examples holding up to max_tokens (at least one), dealt round-robin to
        ranks, padded, never packed: the same set for any batch size or worker count."""
        lengths = np.cumsum([len(ids) - 1 for ids, _ in self.examples])
        n = max(1, int(np.searchsorted(lengths, max_tokens, side="right")))
        mine = list(range(rank, n, world))
        for i in range(0, len(mine), batch_size):
            yield self._padded([self.examples[j] for j in mine[i:i + batch_size]])
