"""The bespokelm model as an lm-eval language model, registered as "bespoke".

    lm = BespokeLM(model, tokenizer, batch_size=16)
    lm_eval.simple_evaluate(model=lm, tasks=[...], task_manager=TaskManager(include_path=...))
    # or by name: simple_evaluate(model="bespoke", model_args="checkpoint=runs/demo/checkpoint")

Implements the three request types lm-eval sends:
- loglikelihood: log P(continuation | context), and whether greedy decoding would produce it;
- loglikelihood_rolling: log P(text) over windows of max_seq_len, every token predicted once;
- generate_until: greedy (or sampled) continuation cut at the first stop string.
Contexts longer than the model's max_seq_len are left-truncated (the most recent tokens matter).
"""
from __future__ import annotations

import json

import lm_eval.models  # noqa: F401  (registers the built-in names lazily)
import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from modeling.checkpoint import load_model
from modeling.generation import generate_batch
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer

# One tokenized scoring request: ((context, continuation) strings, context ids, continuation ids).
_Request = tuple[tuple[str | None, str | None], list[int], list[int]]


# lm-eval fills its model registry only when get_model() finds it empty; registering "bespoke"
# first would hide "hf", "dummy", ... from name lookups, hence the lm_eval.models import above.
@register_model("bespoke")
class BespokeLM(TemplateLM):
    """Wraps a bespokelm (Transformer, Tokenizer) pair for lm-eval; one process, one device."""

    def __init__(self, model: Transformer | None = None, tokenizer: Tokenizer | None = None,
                 checkpoint: str | None = None, batch_size: int | str = 16, max_gen_toks: int = 64,
                 seed: int = 0, device: str | None = None, progress_bars: bool = False,
                 **_ignored) -> None:
        super().__init__()
        if checkpoint is not None:
            model, tokenizer = load_model(checkpoint)
        if model is None or tokenizer is None:
            raise ValueError("BespokeLM needs a model and a tokenizer, or checkpoint=<model folder>")
        if device:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        # lm-eval passes batch_size through as a string ("16" or "auto"); auto means our default.
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.progress_bars = progress_bars  # off by default: tqdm floods Ray worker logs
        self._device = next(model.parameters()).device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self.model.cfg.max_seq_len

    @property
    def tokenizer_name(self) -> str:
        return "bespoke-bpe"

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string)

    def tok_decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def _quiet(self, disable_tqdm: bool) -> bool:
        return disable_tqdm or not self.progress_bars

    # ---- loglikelihood ------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return super().loglikelihood(requests, disable_tqdm=self._quiet(disable_tqdm))

    def _loglikelihood_tokens(self, requests: list[_Request], disable_tqdm: bool = False,
                              **kwargs) -> list[tuple[float, bool]]:
        """Score each continuation given its context; batched, longest first to pad little.

        Requests whose model input is the same token sequence (one-token answers after one
        question, as in MMLU's "A"/"B"/"C"/"D") share a single row of the batch.
        """
        rows: dict[tuple[int, ...], list[int]] = {}      # model input -> request indices
        spans = []
        for i, (_, context, continuation) in enumerate(requests):
            inputs, span = self._window(context, continuation)
            rows.setdefault(inputs, []).append(i)
            spans.append(span)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        order = sorted(rows, key=len, reverse=True)
        bar = tqdm(total=len(requests), disable=self._quiet(disable_tqdm), desc="loglikelihood")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            logprobs = self._forward(chunk)
            for inputs, row in zip(chunk, logprobs):
                for i in rows[inputs]:
                    results[i] = answer = self._score(row, *spans[i])
                    if requests[i][0][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                bar.update(len(rows[inputs]))
        bar.close()
        return results  # type: ignore[return-value]

    def _window(self, context: list[int], continuation: list[int]) -> tuple[tuple[int, ...], tuple]:
        """Model input (the last max_length tokens before the final one) and (start, end, targets)."""
        # Keep the last max_length+1 tokens: inputs are all but the last, targets all but the first.
        whole = (context + continuation)[-(self.max_length + 1):]
        inputs = whole[:-1]
        n_cont = min(len(continuation), len(inputs))
        return tuple(inputs), (len(inputs) - n_cont, len(inputs), whole[len(whole) - n_cont:])

    @torch.no_grad()
    def _forward(self, rows: list[tuple[int, ...]]) -> torch.Tensor:
        """Logits of a right-padded batch of input rows: (B, T, V)."""
        width = max(len(r) for r in rows)
        # Right padding is safe for a causal model: positions before the pad never see it.
        batch = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)  # (B, T)
        for b, row in enumerate(rows):
            batch[b, :len(row)] = torch.tensor(row, dtype=torch.long)
        return self.model(batch.to(self._device))                                       # (B, T, V)

    @staticmethod
    def _score(logits: torch.Tensor, start: int, end: int, targets: list[int]) -> tuple[float, bool]:
        """Sum of the targets' log-probs at positions start:end of one row, and greedy match."""
        logprobs = F.log_softmax(logits[start:end].float(), dim=-1)                     # (n, V)
        target = torch.tensor(targets, device=logprobs.device)                          # (n,)
        total = logprobs.gather(-1, target[:, None]).sum().item()
        return total, bool((logprobs.argmax(-1) == target).all())

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, each scored separately over disjoint max_length windows."""
        windows: list[_Request] = []
        owner: list[int] = []
        for idx, (string,) in enumerate(req.args for req in requests):
            token_windows = map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1))
            for context, continuation in token_windows:
                windows.append(((None, None), context, continuation))
                owner.append(idx)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=self._quiet(disable_tqdm))
        totals = [0.0] * len(requests)
        for idx, (logprob, _) in zip(owner, scores):
            totals[idx] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation ---------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continue each context, then cut the text at the earliest stop string in `until`.

        Requests with the same generation settings run batch_size at a time (left-padded, KV cache).
        """
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1] or {}, sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=self._quiet(disable_tqdm), desc="generate_until")
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                texts = self._generate([requests[i].args[0] for i in chunk], dict(requests[chunk[0]].args[1] or {}))
                for i, text in zip(chunk, texts):
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                    out[i] = text
                bar.update(len(chunk))
        bar.close()
        return out

    def _generate(self, contexts: list[str], gen_kwargs: dict) -> list[str]:
        until = gen_kwargs.pop("until", None) or []
        until = [s for s in ([until] if isinstance(until, str) else until) if s]
        max_new = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
        sample = bool(gen_kwargs.pop("do_sample", False))
        temperature = float(gen_kwargs.pop("temperature", 1.0 if sample else 0.0))
        # Left-truncate so each prompt leaves room for the new tokens inside max_seq_len.
        prompts = [(self.tok_encode(c) or [self.prefix_token_id])[-max(1, self.max_length - max_new):]
                   for c in contexts]
        new_ids = generate_batch(self.model, prompts, max_new_tokens=max_new, temperature=temperature,
                                 top_k=gen_kwargs.pop("top_k", None), top_p=gen_kwargs.pop("top_p", None),
                                 seed=self.seed, eos_id=self.eot_token_id, pad_id=self.tokenizer.pad_id,
                                 stopped=lambda ids: any(s in self.tok_decode(ids) for s in until))
        texts = [self.tok_decode(ids) for ids in new_ids]
        # Stop strings are found in the decoded text, so the cut is at the string, not a token.
        return [t[:min((t.find(s) for s in until if s in t), default=len(t))] for t in texts]
