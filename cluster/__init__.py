"""Where bespokelm runs: connecting to Ray, cluster config checks, job submission, sizing.

Nothing here trains or curates; the stages in `pipelines/` call `connect()` before they start.
"""
from cluster.ray_env import connect

__all__ = ["connect"]
