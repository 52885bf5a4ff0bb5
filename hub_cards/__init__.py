"""e2llm.hub_cards: model and dataset cards, self-contained Hub export, push.

>>> from e2llm.hub_cards import export_model, write_model_card
>>> write_model_card("runs/stage3/merged", report="runs/eval/report.json")  # doctest: +SKIP
>>> export_model("runs/stage3/merged", "export/e2llm", repo_id="me/e2llm")  # doctest: +SKIP
"""

from .cards import (
    HUB_PIPELINE_TAG,
    PIPELINE_TASK,
    build_adapter_card,
    build_model_card,
    write_model_card,
)
from .dataset_card import build_dataset_card, write_dataset_card
from .export import export_adapter, export_folder, export_model, verify_export
from .push import push_folder

__all__ = [
    "HUB_PIPELINE_TAG",
    "PIPELINE_TASK",
    "build_adapter_card",
    "build_dataset_card",
    "build_model_card",
    "export_adapter",
    "export_folder",
    "export_model",
    "push_folder",
    "verify_export",
    "write_dataset_card",
    "write_model_card",
]
