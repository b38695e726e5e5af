"""Byte-level BPE tokenizer on Hugging Face `tokenizers`, with the special tokens the models use.

    tok = Tokenizer.train(texts, vocab_size=4096)
    ids = tok.encode("hello")      # list[int]; tok.decode(ids) == "hello"
    tok.save("runs/demo/tokenizer"); Tokenizer.load("runs/demo/tokenizer")
    ids, mask = tok.encode_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])

Byte-level means every Unicode string is representable: no unknown token, lossless round trip.
Special tokens (bos, eos, pad, the chat roles and end-of-turn, plus any the user lists) are reserved
ids that plain text never produces: text that spells "<|user|>" is encoded as its bytes. Chat
formatting inserts the role ids directly, so a message cannot forge a turn boundary.

Chat format, one turn per message: `<|role|>content<|end|>` (roles in CHAT_ROLES). A prompt for
generation ends with `<|assistant|>`; the model answers and closes its turn with `<|end|>`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [EOS, BOS, PAD]           # always reserved, in this order (ids 0, 1, 2)
CHAT_ROLES = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"
CHAT_TOKENS = [*CHAT_ROLES.values(), END_OF_TURN]
FILE_NAME = "tokenizer.json"


class Tokenizer:
    """A thin wrapper over a `tokenizers.Tokenizer` that knows its bos/eos/pad ids."""

    def __init__(self, hf: HFTokenizer) -> None:
        self.hf = hf
        # Text that spells a special token ("<|endoftext|>") is encoded as ordinary bytes, never as the
        # special id: otherwise decode drops it and a document could forge an end-of-text boundary.
        self.hf.encode_special_tokens = True
        self.eos_id = self._id(EOS)
        self.bos_id = self._id(BOS)
        self.pad_id = self._id(PAD)

    def _id(self, token: str) -> int:
        idx = self.hf.token_to_id(token)
        if idx is None:
            raise ValueError(f"tokenizer has no special token {token!r}")
        return idx

    def special_id(self, token: str) -> int:
        """The id of a reserved special token (ValueError if this tokenizer was trained without it)."""
        return self._id(token)

    @property
    def special_tokens(self) -> list[str]:
        """Every reserved special token of this tokenizer, in id order."""
        added = self.hf.get_added_tokens_decoder()
        return [added[i].content for i in sorted(added) if added[i].special]

    @property
    def has_chat(self) -> bool:
        return all(self.hf.token_to_id(t) is not None for t in CHAT_TOKENS)

    def _chat_id(self, token: str) -> int:
        idx = self.hf.token_to_id(token)
        if idx is None:
            raise ValueError(f"tokenizer has no chat token {token!r}: it was trained without chat tokens "
                             "(an older run, or tokenize.chat_tokens: false); retrain it with `bespoke tokenize`")
        return idx

    def role_id(self, role: str) -> int:
        """The id of a chat role's token, e.g. role_id("user") -> id of "<|user|>"."""
        if role not in CHAT_ROLES:
            raise ValueError(f"role: must be one of {sorted(CHAT_ROLES)}, got {role!r}")
        return self._chat_id(CHAT_ROLES[role])

    @property
    def end_of_turn_id(self) -> int:
        return self._chat_id(END_OF_TURN)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2, chat: bool = True,
              extra_special_tokens: Iterable[str] = ()) -> "Tokenizer":
        """Learn byte-level BPE merges from `texts` (an iterator is streamed, not held in memory).
        Reserves bos/eos/pad, the chat tokens when `chat`, then `extra_special_tokens`, in that order."""
        special = reserved_tokens(chat, extra_special_tokens)
        hf = HFTokenizer(models.BPE())
        # add_prefix_space=False keeps encode/decode an exact inverse on arbitrary strings.
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = False
                    ) -> tuple[list[int], list[bool]]:
        """Token ids of a conversation as `<|role|>content<|end|>` turns, and a per-token mask that is
        True on assistant content and its `<|end|>` (the tokens instruction tuning trains on).
        `add_generation_prompt` appends `<|assistant|>` (mask False) for the model to answer."""
        ids: list[int] = []
        mask: list[bool] = []
        end = self.end_of_turn_id
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError(f"messages[{i}]: must be a dict with a string 'content', got {message!r}")
            role = message.get("role")
            head = self.role_id(role)
            body = [*self.encode(message["content"]), end]
            ids += [head, *body]
            mask += [False] + [role == "assistant"] * len(body)
        if add_generation_prompt:
            ids.append(self.role_id("assistant"))
            mask.append(False)
        return ids, mask

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(path / FILE_NAME))
        return path / FILE_NAME

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        path = Path(directory)
        return cls(HFTokenizer.from_file(str(path / FILE_NAME if path.is_dir() else path)))


def reserved_tokens(chat: bool = True, extra: Iterable[str] = ()) -> list[str]:
    """The special tokens a new tokenizer reserves, in id order: bos/eos/pad, chat tokens, extras."""
    tokens = SPECIAL_TOKENS + (CHAT_TOKENS if chat else [])
    for token in extra:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special_tokens: each must be a non-empty string, got {token!r}")
        if token not in tokens:
            tokens = [*tokens, token]
    return list(tokens)
