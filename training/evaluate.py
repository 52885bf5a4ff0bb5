"""Moved: the `e2llm evaluate` command is `e2llm.training.evaluate_cli`, model loading `e2llm.training.model_loading`.
`load_model` is re-exported for `training/predict.py` (owner `inference`, request filed); delete this module once it
imports `e2llm.training.model_loading.load_model`."""

from e2llm.training.model_loading import load_model

__all__ = ["load_model"]
