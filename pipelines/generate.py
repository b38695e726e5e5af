"""Generate stage: sample continuations of prompts from a trained model folder, all in one batch.

    bespoke generate --checkpoint runs/demo/train/.../model --prompt "The os module" "def main" \
        --temperature 0.7 --top-k 50 --top-p 0.9 --repetition-penalty 1.2 --stop "\n\n" --seed 1

Each flag is the `generate.<field>` override of the same name (`--set generate.temperature=0.7`).
The prompts are left-padded into one batch with a KV cache (modeling/generation.py). For an
encoder_decoder checkpoint each prompt is a source and the completion is the decoded target.
Runs as a Ray task, so on a cluster it can be placed on a GPU worker; in-process without Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=lambda: [
        "The os module provides", "Return a new list", "This function raises ValueError if"])
    max_new_tokens: int = 60
    temperature: float = 0.8                 # 0 = greedy
    top_k: int | None = 50
    top_p: float | None = 0.95
    repetition_penalty: float = 1.0          # CTRL-style; 1 = off, >1 discourages repeats
    stop: list[str] = field(default_factory=list)   # a completion ends before its first stop string
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens: must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature: must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k <= 0:
            raise ValueError(f"top_k: must be positive or null, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1] or null, got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty: must be positive (1 = off), got {self.repetition_penalty}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop: must be non-empty strings, got {self.stop!r}")


def _generate_local(cfg: GenerateConfig, model_dir: str, prompts: list[str]) -> list[dict]:
    from modeling.checkpoint import load_model
    from modeling.generation import cut_at_stop, generate_batch, generate_seq2seq, stop_at
    from pipelines.export import resolve_model_dir

    model, tok = load_model(resolve_model_dir(model_dir))
    if tok is None:
        raise FileNotFoundError(f"{model_dir} holds no tokenizer.json")
    sampling = dict(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed,
                    eos_id=tok.eos_id, pad_id=tok.pad_id, repetition_penalty=cfg.repetition_penalty,
                    stopped=stop_at(tok.decode, cfg.stop) if cfg.stop else None)
    ids = tok.encode_batch(prompts)
    if model.cfg.arch == "encoder_decoder":
        rows = generate_seq2seq(model, ids, cfg.max_new_tokens, bos_id=tok.bos_id, **sampling)
    else:
        rows = generate_batch(model, ids, cfg.max_new_tokens, **sampling)
    return [{"prompt": p, "completion": cut_at_stop(tok.decode(r), cfg.stop), "new_tokens": len(r)}
            for p, r in zip(prompts, rows)]


def run_generate(cfg: GenerateConfig, model_dir: str, prompts: list[str] | None = None) -> list[dict]:
    """Continue each prompt; returns [{"prompt", "completion", "new_tokens"}]."""
    import ray

    prompts = prompts or cfg.prompts
    if not ray.is_initialized():
        return _generate_local(cfg, model_dir, prompts)
    task = ray.remote(num_cpus=1)(_generate_local)
    return ray.get(task.remote(cfg, model_dir, prompts))


# `bespoke generate` flags: flag -> the GenerateConfig field it overrides.
FLAGS = {"max-new-tokens": int, "temperature": float, "top-k": int, "top-p": float,
         "repetition-penalty": float, "seed": int}


def add_arguments(parser) -> None:
    """The generation flags of `bespoke generate` (registered by pipelines.cli)."""
    for flag, kind in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, help=f"= --set generate.{flag.replace('-', '_')}=VALUE")
    parser.add_argument("--stop", action="append", metavar="TEXT",
                        help="stop string (repeatable; backslash escapes like \\n are decoded) = generate.stop")


def overrides(args) -> list[str]:
    """`generate.*` config overrides from the parsed flags (only the flags given)."""
    import json

    out = [f"generate.{flag.replace('-', '_')}={getattr(args, flag.replace('-', '_'))}"
           for flag in FLAGS if getattr(args, flag.replace("-", "_"), None) is not None]
    if getattr(args, "stop", None):
        stops = [s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in args.stop]
        out.append(f"generate.stop={json.dumps(stops)}")
    return out
