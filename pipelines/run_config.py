"""The run config: one YAML file, a section per stage, every section a small typed dataclass.

    cfg = load_run_config("configs/demo.yaml", ["train.max_steps=100"])
    cfg.paths.curated          # runs/<name>/curated (or curated_dir: a path or s3:// / gs:// URL)

Unknown keys, wrong types and impossible values raise `ConfigError` naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from modeling.config import ModelConfig
from pipelines.config import ConfigError, apply_overrides, build, read_yaml
from pipelines.curation import CurateConfig
from pipelines.curation.store import is_url
from pipelines.evaluation import EvalConfig
from pipelines.generate import GenerateConfig
from pipelines.tokenize import TokenizeConfig
from pipelines.training.config import TrainConfig
from pipelines.training.finetune import FinetuneConfig
from pipelines.training.pairs import PairsConfig
from tuning.config import TuneConfig

# finetune runs only when finetune.data names instruction files (it is skipped otherwise).
STAGES = ["curate", "tokenize", "pretrain", "tune", "finetune", "eval", "generate"]


@dataclass
class DemoConfig:
    """The built-in corpus used when `inputs` is empty: stdlib docs rendered as a WARC."""

    n_modules: int | None = None   # None = every importable stdlib module
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_modules is not None and self.n_modules <= 0:
            raise ValueError(f"n_modules: must be positive or null (all), got {self.n_modules}")


@dataclass
class RunPaths:
    """Where each stage of a run reads and writes (see ../shared/DESIGN.md, "A run folder").

    Every folder is root/<name>, except `curated` and `tokens` when the run config moves them
    (`curated_dir`, `tokens_dir`): then they are that path or `s3://` / `gs://` URL, as a str."""

    root: Path
    moved: dict = field(default_factory=dict)   # {"curated": URL or path, "tokens": ...}

    def __getattr__(self, name: str) -> Path:
        folders = {"data", "curated", "tokenizer", "tokens", "train", "tune", "finetune", "eval", "generate", "export"}
        if name in folders:
            where = self.moved.get(name)
            if where:
                return where if is_url(where) else Path(where)
            return self.root / name
        raise AttributeError(name)


@dataclass
class RunConfig:
    name: str = "demo"
    runs_dir: str = "runs"                             # a path or file:// URI; on a cluster every node must see it
    # The two big artifacts may live elsewhere, e.g. in a bucket (s3://, gs://; "" = in the run
    # folder): curate writes and tokenize reads curated_dir; tokenize writes and pretrain, tune
    # and eval read tokens_dir (workers read shards by byte range). Checkpoints: train.storage_path.
    curated_dir: str = ""
    tokens_dir: str = ""
    shared_mounts: list[str] = field(default_factory=list)   # mount points all nodes share (cluster/storage.py)
    inputs: list[str] = field(default_factory=list)   # paths/globs; empty = build the demo corpus
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    num_cpus: int | None = None                        # embedded Ray only; None = all cores
    demo: DemoConfig = field(default_factory=DemoConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)   # model.arch encoder_decoder's data
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"stages: unknown stage {unknown[0]!r}; allowed: {STAGES}")
        if not self.name or "/" in self.name:
            raise ValueError(f"name: must be a non-empty folder name, got {self.name!r}")
        from cluster.storage import local_runs_dir

        self.runs_dir = local_runs_dir(self.runs_dir)   # file:// -> its path; s3:// etc. -> a clear error
        for key in ("curated_dir", "tokens_dir"):
            setattr(self, key, _artifact_dir(key, getattr(self, key)))
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(f"train.seq_len: {self.train.seq_len} exceeds model.max_seq_len "
                             f"({self.model.max_seq_len}); lower train.seq_len or raise model.max_seq_len")
        self.train.parallel.check_model(self.model)
        if self.model.arch == "encoder_decoder" and is_url(self.tokens_dir):
            raise ValueError(f"tokens_dir: {self.tokens_dir} is object storage, but an encoder_decoder run's "
                             "tokens folder only names its pair files; leave tokens_dir empty")
        if self.model.arch == "encoder_decoder" and not self.pairs.paths:
            raise ValueError("pairs.paths: model.arch is encoder_decoder, which trains on (source, target) "
                             "pairs: list their jsonl files (see configs/seq2seq.yaml)")
        try:
            self.finetune.train_config(self.train)   # overrides must make a valid train section
        except ValueError as exc:
            raise ValueError(f"finetune.{exc}") from None

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.runs_dir) / self.name, {"curated": self.curated_dir, "tokens": self.tokens_dir})


def _artifact_dir(key: str, value: str) -> str:
    """A local path (file:// becomes its path), s3:// or gs://; anything else names the field."""
    scheme = urlparse(value).scheme
    if scheme == "file":
        return urlparse(value).path
    if len(scheme) > 1 and scheme not in ("s3", "gs"):
        raise ValueError(f"{key}: {value!r} has scheme {scheme}://; use a path, file://, s3:// or gs://")
    if scheme and not urlparse(value).netloc:
        raise ValueError(f"{key}: {value!r} names no bucket; write {scheme}://BUCKET/prefix")
    return value.rstrip("/") if scheme else value


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML (or nothing: all defaults), apply `section.key=value` overrides, validate."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return build(RunConfig, data, "")


__all__ = ["ConfigError", "RunConfig", "RunPaths", "STAGES", "load_run_config"]
