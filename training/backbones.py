"""Renamed `e2llm.training.language_models` (these are Qwen checkpoints; EEG encoders are `e2llm.backbones_e2llm`).
Only `CONFIG_DIR` is re-exported, for the tests owned by others that still import it from here (requests filed in
/work/coord/requests/); delete this module once they import `e2llm.training.language_models.CONFIG_DIR`."""

from e2llm.training.language_models import CONFIG_DIR

__all__ = ["CONFIG_DIR"]
