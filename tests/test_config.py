"""Tests for the run config (pipelines/config.py, pipelines/run_config.py) and the `bespoke` CLI's
config handling. Nothing here starts Ray: every error is raised while the config is loaded."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeling.config import ModelConfig
from pipelines.config import ConfigError, apply_overrides
from pipelines.run_config import STAGES, RunConfig, load_run_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------
# Loading and overrides
# ----------------------------------------------------------------------------------------------

def test_no_file_gives_all_defaults():
    cfg = load_run_config(None)
    assert cfg == RunConfig()
    assert cfg.model == ModelConfig()
    assert cfg.stages == STAGES and cfg.inputs == []
    assert cfg.paths.root == Path("runs") / "demo"
    assert cfg.paths.curated == Path("runs") / "demo" / "curated"
    assert load_run_config(None, []) == RunConfig()


def test_curated_and_tokens_may_live_in_a_bucket():
    cfg = load_run_config(None, ["curated_dir=s3://corp-data/curated/", "tokens_dir=file:///mnt/tokens"])
    assert cfg.paths.curated == "s3://corp-data/curated" and cfg.paths.tokens == Path("/mnt/tokens")
    assert cfg.paths.tokenizer == Path("runs") / "demo" / "tokenizer"     # the rest stays in the run folder


def test_yaml_sections_parse(tmp_path):
    path = write(tmp_path, """
name: small
inputs: ["a/*.warc.gz", b.jsonl]
stages: [curate, tokenize]
model:
  d_model: 64
  n_heads: 4
  n_kv_heads: 2
  max_seq_len: 128
  dropout: 0          # an int where a float is expected is fine
train:
  seq_len: 64
  max_steps: 30
  warmup_steps: 3
  lr: 1.0e-3
  strategy: fsdp
  use_gpu: false
tune:
  batch_sizes: [2, 4]
""")
    cfg = load_run_config(path)
    assert cfg.name == "small" and cfg.inputs == ["a/*.warc.gz", "b.jsonl"]
    assert cfg.stages == ["curate", "tokenize"]
    assert (cfg.model.d_model, cfg.model.n_heads, cfg.model.n_kv_heads, cfg.model.max_seq_len) == (64, 4, 2, 128)
    assert isinstance(cfg.model, ModelConfig)
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert (cfg.train.seq_len, cfg.train.max_steps, cfg.train.strategy) == (64, 30, "fsdp")
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.tune.batch_sizes == [2, 4]
    # Untouched keys keep their defaults.
    assert cfg.train.batch_size == RunConfig().train.batch_size
    assert cfg.model.n_layers == ModelConfig().n_layers
    assert cfg.paths.train == Path("runs") / "small" / "train"


def test_shipped_configs_load():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert isinstance(load_run_config(path), RunConfig)


def test_empty_file_is_defaults(tmp_path):
    assert load_run_config(write(tmp_path, "")) == RunConfig()
    assert load_run_config(write(tmp_path, "# only a comment\n")) == RunConfig()


def test_set_overrides_apply_with_yaml_typing(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 100\n  lr: 0.01\n")
    cfg = load_run_config(path, ["train.max_steps=5", "model.n_kv_heads=2", "tune.batch_sizes=[4,8]",
                                 "train.warmup_steps=1", "model.dropout=0.25", "train.use_gpu=true",
                                 "name=other", "tune.max_steps=40.0", "model.n_kv_heads=null"])
    assert cfg.train.max_steps == 5 and isinstance(cfg.train.max_steps, int)
    assert cfg.train.lr == pytest.approx(0.01)          # from the file, not overridden
    assert cfg.tune.batch_sizes == [4, 8]
    assert cfg.model.dropout == 0.25 and cfg.train.use_gpu is True and cfg.name == "other"
    assert cfg.tune.max_steps == 40 and isinstance(cfg.tune.max_steps, int)   # integral float -> int
    assert cfg.model.n_kv_heads is None                 # later overrides win; null is None
    cfg = load_run_config(None, ["model.n_kv_heads=2", "train.max_steps=5", "train.warmup_steps=0"])
    assert cfg.model.n_kv_heads == 2 and cfg.model.kv_heads == 2 and cfg.train.max_steps == 5


def test_apply_overrides_on_plain_dicts():
    data = {"train": {"lr": 0.1}}
    assert apply_overrides(data, ["train.max_steps=7", "model.name=x=y", "a.b.c=[1, {k: v}]", "s.e="]) is data
    assert data == {"train": {"lr": 0.1, "max_steps": 7}, "model": {"name": "x=y"},
                    "a": {"b": {"c": [1, {"k": "v"}]}}, "s": {"e": ""}}
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"train": 5}, ["train.max_steps=1"])


# ----------------------------------------------------------------------------------------------
# Errors: every message starts with (or names) the full key
# ----------------------------------------------------------------------------------------------

BAD_OVERRIDES = [
    (["foo=1"], "foo"),                                           # unknown top-level key
    (["model.foo=1"], "model.foo"),                               # unknown key in a section
    (["train.foo=1"], "train.foo"),
    (["demo.nope=1"], "demo.nope"),
    (["train.max_steps=abc"], "train.max_steps"),                 # string for an int
    (["train.max_steps=5.5"], "train.max_steps"),                 # non-integral float for an int
    (["train.max_steps=true"], "train.max_steps"),                # bool for an int
    (["model.n_kv_heads=two"], "model.n_kv_heads"),               # string for int | None
    (["model.n_kv_heads=true"], "model.n_kv_heads"),
    (["train.lr=fast"], "train.lr"),                              # string for a float
    (["train.lr=true"], "train.lr"),                              # bool for a float
    (["train.use_gpu=1"], "train.use_gpu"),                       # int for a bool
    (["name=5"], "name"),                                         # int for a str
    (["tune.batch_sizes=8"], "tune.batch_sizes"),                 # scalar for a list
    (["tune.batch_sizes=[4, x]"], "tune.batch_sizes[1]"),         # bad list item
    (["model.d_model=100", "model.n_heads=3"], "model.d_model"),  # impossible value
    (["model.n_kv_heads=4"], "model.n_kv_heads"),
    (["model.dropout=1.5"], "model.dropout"),
    (["train.max_steps=0"], "train.max_steps"),
    (["train.seq_len=512"], "train.seq_len"),                     # > model.max_seq_len (256)
    (["model.max_seq_len=64"], "train.seq_len"),                  # ... and from the other side
    (["train.strategy=foo"], "train.strategy"),                   # invalid Literal
    (["stages=[curate, bake]"], "stages"),
    (["model=5"], "model"),                                       # a section that is not a mapping
    (["model.arch=encoder"], "model.arch"),
    (["tokens_dir=hdfs://nn/tokens"], "tokens_dir"),                # only paths, s3:// and gs://
    (["curated_dir=s3://"], "curated_dir"),                         # no bucket
    (["train.source_weights={web: -1}"], "train.source_weights"),
    (["model.arch=encoder_decoder", "tokens_dir=s3://b/t", "pairs.paths=[a.jsonl]"], "tokens_dir"),
]


@pytest.mark.parametrize("overrides, key", BAD_OVERRIDES, ids=[";".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_values_raise_config_error_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, overrides)
    message = str(exc.value)
    assert message.startswith(f"{key}:"), message
    assert "\n" not in message


@pytest.mark.parametrize("text, key", [
    ("bogus: 1\n", "bogus"),
    ("model:\n  d_model: 64\n  colour: red\n", "model.colour"),
    ("train:\n  max_steps: '5'\n", "train.max_steps"),
    ("train:\n  max_steps: 5.5\n", "train.max_steps"),
    ("train:\n  max_steps: yes\n", "train.max_steps"),
    ("model:\n  d_model: 100\n  n_heads: 3\n", "model.d_model"),
    ("model:\n  max_seq_len: 64\ntrain:\n  seq_len: 128\n", "train.seq_len"),
    ("train:\n  strategy: foo\n", "train.strategy"),
    ("train: [1, 2]\n", "train"),
])
def test_bad_yaml_values_raise_config_error_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as exc:
        load_run_config(write(tmp_path, text))
    assert str(exc.value).startswith(f"{key}:"), str(exc.value)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, ["model.d_modle=64"])
    assert "d_model" in str(exc.value) and "n_heads" in str(exc.value)


def test_override_errors_beat_file_values(tmp_path):
    """An override of a valid file is validated too; the file's own values are typed the same way."""
    path = write(tmp_path, "train:\n  max_steps: 50\n")
    with pytest.raises(ConfigError, match=r"^train\.max_steps:"):
        load_run_config(path, ["train.max_steps=-1"])


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as exc:
        load_run_config(missing)
    assert str(missing) in str(exc.value)
    with pytest.raises(ConfigError):
        load_run_config(tmp_path)                        # a folder is not a config file


@pytest.mark.parametrize("text", ["train: [1, 2\n", "model:\n  d_model: 64\n n_heads: 4\n", "a: b: c\n"])
def test_invalid_yaml(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid YAML") as exc:
        load_run_config(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(write(tmp_path, text))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_ray(monkeypatch):
    """Fail loudly if the CLI tries to connect to Ray or run anything."""
    import cluster
    import pipelines.run

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the CLI started work before validating its config")

    monkeypatch.setattr(cluster, "connect", forbidden)
    monkeypatch.setattr(pipelines.run, "run_lifecycle", forbidden)
    monkeypatch.setattr(pipelines.run, "write_resolved_config", forbidden)
    yield calls
    assert calls == []


@pytest.mark.parametrize("argv, key", [
    (["run", "--set", "model.foo=1"], "model.foo"),
    (["pretrain", "--set", "train.max_steps=abc"], "train.max_steps"),
    (["curate", "--set", "train.strategy=foo", "--input", "x.warc.gz"], "train.strategy"),
    (["tune", "--name", "a/b"], "name"),
    (["eval", "--config", "/nonexistent/run.yaml"], "/nonexistent/run.yaml"),
])
def test_cli_config_error_exits_2_with_one_line(capsys, no_ray, argv, key):
    from pipelines.cli import main

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bespoke: config error: ")
    assert key in lines[0]
    assert "Traceback" not in err


def bespoke_exe() -> str:
    exe = Path(sys.executable).parent / "bespoke"
    if exe.is_file():
        return str(exe)
    found = shutil.which("bespoke")
    if not found:
        pytest.skip("the bespoke console script is not installed")
    return found


def run_bespoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([bespoke_exe(), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)


def test_console_script_config_error(tmp_path):
    proc = subprocess.run([bespoke_exe(), "run", "--set", "model.foo=1", "--set", f"runs_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "model.foo" in proc.stderr
    assert list(tmp_path.iterdir()) == []              # nothing written: no run folder, no Ray logs


def test_console_script_help_lists_stages():
    proc = run_bespoke("--help")
    assert proc.returncode == 0, proc.stderr
    for stage in ["run", *STAGES]:
        assert stage in proc.stdout
    assert "usage: bespoke" in proc.stdout


def test_help_lists_stages_and_options(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for stage in ["run", *STAGES]:
        assert stage in out

    with pytest.raises(SystemExit) as exc:
        main(["curate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--input", "--output", "--config", "--set", "--name", "SECTION.KEY=VALUE"):
        assert option in out
    assert "--checkpoint" not in out                    # eval/generate only

    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--prompt" in out


def test_cli_usage_errors_exit_2(capsys):
    from pipelines.cli import main

    for argv in ([], ["bake"], ["run", "--bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "usage: bespoke" in capsys.readouterr().err


def test_demo_yaml_lists_every_default():
    """configs/demo.yaml documents the defaults; it must not drift from the dataclasses."""
    import dataclasses

    from pipelines.run_config import RunConfig

    shipped = load_run_config(REPO / "configs" / "demo.yaml")
    assert dataclasses.asdict(shipped) == dataclasses.asdict(RunConfig())
