"""Parallelism pieces the parallelize step (pipelines/training/parallelize.py) composes:
config.py (ParallelConfig), tensor.py (tensor-parallel plans), pipeline.py (pipeline stages)."""
from pipelines.training.parallel.config import ParallelConfig

__all__ = ["ParallelConfig"]
