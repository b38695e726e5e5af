"""Generate stage: sample continuations of prompts from a trained model folder.

    bespoke generate --checkpoint runs/demo/train/.../model --prompt "The os module" --set generate.temperature=0.7

Runs as a Ray task, so on a cluster it can be placed on a GPU worker; in-process without Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=lambda: [
        "The os module provides", "Return a new list", "This function raises ValueError if"])
    max_new_tokens: int = 60
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = 0.95
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


def _generate_local(cfg: GenerateConfig, model_dir: str, prompts: list[str]) -> list[dict]:
    from modeling.checkpoint import load_model
    from modeling.generation import generate

    model, tokenizer = load_model(model_dir)
    if tokenizer is None:
        raise FileNotFoundError(f"{model_dir} holds no tokenizer.json")
    samples = []
    for i, prompt in enumerate(prompts):
        ids = generate(model, tokenizer.encode(prompt), cfg.max_new_tokens, cfg.temperature,
                       cfg.top_k, cfg.top_p, seed=cfg.seed + i, eos_id=tokenizer.eos_id)
        samples.append({"prompt": prompt, "completion": tokenizer.decode(ids), "new_tokens": len(ids)})
    return samples


def run_generate(cfg: GenerateConfig, model_dir: str, prompts: list[str] | None = None) -> list[dict]:
    """Continue each prompt; returns [{"prompt", "completion", "new_tokens"}]."""
    import ray

    prompts = prompts or cfg.prompts
    if not ray.is_initialized():
        return _generate_local(cfg, model_dir, prompts)
    task = ray.remote(num_cpus=1)(_generate_local)
    return ray.get(task.remote(cfg, model_dir, prompts))
