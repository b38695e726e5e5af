"""Check a Ray cluster launcher YAML offline, before `ray up` spends money on it.

    python -m cluster.cluster_config cluster.yaml       # prints "ok" or what is wrong

Uses Ray's own schema (`prepare_config` + `validate_config`): unknown keys, a `head_node_type`
that names no node type, and non-integer resources are all caught without cloud credentials.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


class ClusterConfigError(ValueError):
    """The cluster YAML would not launch; the message says why."""


def check_cluster_yaml(path: str | Path) -> dict:
    """Validate the YAML at `path` with Ray's schema; returns the prepared config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{path}: expected a mapping at the top level")
    try:
        prepared = prepare_config(raw)
        validate_config(prepared)
    except Exception as exc:  # jsonschema and ValueError both mean "would not launch"
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        raise ClusterConfigError(f"{path}: {message}") from None
    return prepared


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    try:
        check_cluster_yaml(args[0] if args else "cluster.yaml")
    except ClusterConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
