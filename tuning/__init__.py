"""Hyperparameter search with Ray Tune. It calls the training stage; training never imports it."""
