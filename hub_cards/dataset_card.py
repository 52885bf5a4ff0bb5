"""The dataset card of a prepared dataset folder (`e2llm prepare` / `save_prepared`: Arrow files + `summary.json`).

>>> from e2llm.hub_cards import write_dataset_card
>>> write_dataset_card("data/seed7-prepared", repo_id="me/seed7-windows")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from .cards import DATASET_TAGS, TEMPLATES, _read_json, describe_dataset, save_card
from .paths import redact_paths


def build_dataset_card(prepared_dir: str | Path, repo_id: str | None = None) -> DatasetCard:
    """The card of a prepared dataset folder (`save_prepared` output: `summary.json` + Arrow files)."""
    prepared_dir = Path(prepared_dir)
    if not (prepared_dir / "summary.json").is_file():
        raise ValueError(
            f"{prepared_dir} is not a prepared e2llm dataset (no summary.json); run `e2llm prepare`"
        )
    summary = _read_json(prepared_dir / "summary.json")
    if "metadata" not in summary:
        raise ValueError(f"{prepared_dir / 'summary.json'} holds no metadata")
    info = describe_dataset(summary)
    metadata = summary["metadata"]
    data = DatasetCardData(
        pretty_name=f"{info['pretty_name']} (e2llm prepared windows)",
        tags=list(DATASET_TAGS),
        task_categories=["other"],
        license="other",
        size_categories=[_size_category(int(summary.get("n_windows") or 0))],
    )
    return DatasetCard.from_template(
        data,
        template_path=str(TEMPLATES / "dataset_card.md"),
        title=repo_id or prepared_dir.resolve().name,
        info=info,
        summary=summary,
        metadata=redact_paths(metadata),
        preprocessing=json.dumps(redact_paths(metadata.get("preprocessing")), indent=2, default=str),
    )


def write_dataset_card(prepared_dir: str | Path, repo_id: str | None = None, overwrite: bool = False) -> Path:
    """Render the dataset card into `prepared_dir/README.md` (atomically; a README e2llm did not write is replaced
    only with `overwrite`); returns its path."""
    return save_card(build_dataset_card(prepared_dir, repo_id), Path(prepared_dir) / "README.md", overwrite=overwrite)


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M"


__all__ = ["build_dataset_card", "write_dataset_card"]
