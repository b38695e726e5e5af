"""Pretraining on Ray Train: config, packed-token data, parallelize step, train loop, driver."""
from pipelines.training.config import TrainConfig
from pipelines.training.trainer import TrainResult, run_pretrain

__all__ = ["TrainConfig", "TrainResult", "run_pretrain"]
