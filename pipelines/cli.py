"""The `bespoke` command: the whole lifecycle (`bespoke run`) or one stage at a time.

    bespoke run [--config FILE] [--set section.key=value ...] [--verbose]
    bespoke curate --input 'crawl/*.warc.gz' --output curated/
    bespoke tokenize | pretrain | tune | eval | generate --config FILE [--set ...]
    bespoke finetune --config FILE --from CHECKPOINT_OR_MODEL_DIR [--data chat.jsonl ...]
    bespoke generate --checkpoint PATH --prompt P1 P2 [--temperature 0 --top-k K --top-p P
                     --repetition-penalty R --stop TEXT ... --max-new-tokens N --seed S]
    bespoke eval --checkpoint base=PATH --checkpoint tuned=PATH [--set eval.tasks=[...]]  (side by side)
    bespoke submit <stage> [--config FILE] [--set ...] [--address URL] [--wait]   (a Ray job)
    bespoke tune --resume runs/<name>/tune          (finish an interrupted search)
    bespoke tune-report runs/<name>/tune            (report.md with plots, best.yaml)
    bespoke export CHECKPOINT OUT_DIR [--verify | --import]
    bespoke plan --params 7B [--gpu H100 --gpus 64 --mfu 0.4] (or --tokens, --gpu-hours; see cluster/plan.py)

Every stage connects to the Ray cluster in RAY_ADDRESS (so `ray job submit -- bespoke pretrain ...`
works) or starts an embedded Ray. A bad config is one message naming the key, and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from pipelines.config import ConfigError

STAGE_HELP = {
    "run": "the whole lifecycle: curate, tokenize, pretrain, tune, eval, generate, report",
    "curate": "clean, filter and deduplicate raw corpora into train/val parquet (Ray Data)",
    "tokenize": "train a byte-level BPE tokenizer and pack token sequences",
    "pretrain": "pretrain the transformer on Ray Train workers",
    "tune": "search learning rate, batch size (and warmup, weight decay) with Ray Tune: ASHA, HyperBand or PBT",
    "finetune": "fine-tune a trained model on instruction jsonl: full, frozen layers, or LoRA",
    "eval": "held-out perplexity and lm-eval tasks on the best (or a given) model",
    "generate": "sample text from a trained model",
}
# Commands that need no run config or Ray: name -> (module with add_arguments(p) and cli(args), help).
TOOLS = {
    "export": ("pipelines.export", "write a model as a Hugging Face Llama folder (or --import one back)"),
    "tune-report": ("tuning.report", "report on a Tune search: report.md with plots, best.yaml, the best config"),
    "plan": ("cluster.plan", "size a run: parameters, tokens, FLOPs, memory per GPU, layout, GPU-hours, storage"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bespoke", description="Build a language model from scratch on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in STAGE_HELP.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", help="run config YAML (default: built-in defaults)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value (repeatable), e.g. --set train.max_steps=100")
        p.add_argument("--name", help="run name: artifacts go to <runs_dir>/<name>/")
        p.add_argument("--verbose", action="store_true",
                       help="show every Ray message and progress bar (= BESPOKE_LOG_LEVEL=debug; cluster/quiet.py)")
        if name in ("curate", "run"):
            p.add_argument("--restart", action="store_true",
                           help="curation: remove what an earlier run wrote to its output and start over (by "
                                "default a rerun with the same config resumes, skipping the parts already finished)")
        if name == "curate":
            p.add_argument("--input", nargs="+", help="input paths or globs (WARC, jsonl, ...)")
            p.add_argument("--output", help="output folder (default: runs/<name>/curated)")
            p.add_argument("--steps", metavar="STEP[,STEP...]",
                           help="run only these curation steps, e.g. pii or dedup (= curate.steps)")
        if name == "pretrain":
            p.add_argument("--resume-from", dest="resume_from", metavar="CHECKPOINT",
                           help="start from this training checkpoint (model, optimizer, step, RNG), on any "
                                "number of workers (= train.resume_from)")
        if name == "finetune":
            p.add_argument("--from", dest="init_from", metavar="CHECKPOINT_OR_MODEL_DIR",
                           help="the model to start from (= finetune.init_from; default: the run's best model)")
            p.add_argument("--data", nargs="+", help="instruction jsonl files or globs (= finetune.data)")
        if name == "eval":
            p.add_argument("--checkpoint", action="append", metavar="[LABEL=]PATH",
                           help="a model folder, training checkpoint or exported Hugging Face folder, or "
                                "pretrain/tune/finetune/best (this run's); repeat to compare checkpoints side by side "
                                "(default: the run's best model)")
        if name == "tune":
            p.add_argument("--resume", metavar="PATH", help="finish an interrupted search in PATH (runs/<name>/tune): "
                                                            "unfinished trials continue, finished ones are kept")
        if name == "generate":
            p.add_argument("--checkpoint", help="a model folder or training checkpoint, decoder-only or "
                                                "encoder-decoder (default: the run's best model)")
            p.add_argument("--prompt", nargs="+", help="prompts, decoded as one batch (default: generate.prompts)")
            importlib.import_module("pipelines.generate").add_arguments(p)
    for name, (module, help_text) in TOOLS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    from cluster.submit import add_submit_parser

    add_submit_parser(sub)
    return parser


def _load(args):
    from pipelines.run_config import load_run_config

    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if getattr(args, "steps", None):
        overrides.append(f"curate.steps=[{args.steps}]")
    if getattr(args, "init_from", None):  # JSON strings and lists are YAML: paths stay strings
        overrides.append(f"finetune.init_from={json.dumps(args.init_from)}")
    if getattr(args, "data", None):
        overrides.append(f"finetune.data={json.dumps(args.data)}")
    if getattr(args, "resume_from", None):
        overrides.append(f"train.resume_from={json.dumps(args.resume_from)}")
    if args.command == "generate":
        overrides += importlib.import_module("pipelines.generate").overrides(args)
    return load_run_config(args.config, overrides)


def _run(args) -> object:
    from pipelines import stages
    from pipelines.run import _say, run_lifecycle, write_resolved_config

    if args.command in TOOLS:
        return importlib.import_module(TOOLS[args.command][0]).cli(args)
    cfg = _load(args)
    if args.command == "run":
        return run_lifecycle(cfg, restart_curation=args.restart)
    from cluster import connect
    from cluster.resources import preflight

    if args.command == "tune" and args.resume:   # the search folder holds its own config
        connect(cfg.num_cpus)
        return stages.stage_tune(cfg, _say, resume=args.resume)
    write_resolved_config(cfg)
    connect(cfg.num_cpus)
    preflight(args.command, cfg, _say)    # what the stage asks Ray for; fails fast if it can never fit
    if args.command == "curate":
        return stages.stage_curate(cfg, _say, inputs=args.input, output=args.output, restart=args.restart)
    if args.command == "eval":
        return stages.stage_eval(cfg, _say, checkpoint=args.checkpoint)
    if args.command == "generate":
        return stages.stage_generate(cfg, _say, checkpoint=args.checkpoint, prompts=args.prompt)
    return getattr(stages, f"stage_{args.command}")(cfg, _say)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "submit":  # arguments submit does not know go to the stage
        from cluster.submit import run_submit

        return run_submit(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "verbose", False):
        from cluster.quiet import set_verbose

        set_verbose()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        result = _run(args)
    except ConfigError as exc:
        print(f"bespoke: config error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"bespoke: {exc}", file=sys.stderr)
        return 1
    if args.command != "run" and isinstance(result, dict):
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
