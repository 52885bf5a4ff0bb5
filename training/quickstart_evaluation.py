"""The evaluation part of one quickstart run: the merged stage-3 model (copied to ``RUN/final``) scored by
`e2llm.training.evaluation` on the run's test side next to the baselines, plus two things only the quickstart has at
hand: the stage-1 head on the same test windows and the stage-2 alignment gap on them. The model card of
``RUN/final`` is rendered from the run's report (`e2llm card`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor

from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.processing.instructions import evidence_reference
from e2llm.processing.splits import resolve_split
from e2llm.training.alignment import alignment_gap
from e2llm.training.cli import main as cli_main
from e2llm.training.evaluation.evaluate import EvalOptions, evaluate_model, test_rows
from e2llm.training.evaluation.metrics import classification_metrics
from e2llm.training.evaluation.report import _clean
from e2llm.training.evaluation.summary import summarize
from e2llm.training.model_loading import load_model
from e2llm.training.saving import MERGED_DIR
from e2llm.training.window_tensors import extract_windows


@torch.no_grad()
def stage1_head(folder: Path, windows, label_names, batch_size: int = 64) -> dict:
    """The stage-1 head's metrics and per-window predictions on `windows` (the evaluated test windows)."""
    model = E2LLMEEGForEmotionClassification.from_pretrained(folder).eval()
    tensors = extract_windows(windows, AutoFeatureExtractor.from_pretrained(folder))
    logits = torch.cat([model(**tensors.gather(torch.arange(i, min(i + batch_size, len(tensors))))).logits
                        for i in range(0, len(tensors), batch_size)])
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    labels = np.asarray(windows.with_format("numpy").select_columns(["emotion"])[:]["emotion"])
    metrics = classification_metrics(labels.tolist(), probs.argmax(1).tolist(), label_names)
    confidence = probs.max(axis=1)
    metrics.update(predictions=probs.argmax(1).tolist(), confidence=confidence.tolist(),
                   mean_confidence=float(confidence.mean()))
    return metrics


def write_card(final: Path, report: dict, command: str) -> None:
    """``final/README.md`` from the single-run summary (without per-window runs), via `e2llm card`."""
    single = {**summarize([report]), "command": command}
    path = final.parent / "card_report.json"
    path.write_text(json.dumps(_clean({k: v for k, v in single.items() if k not in ("runs", "examples", "files")}),
                               indent=2, default=str) + "\n")
    if cli_main(["card", str(final), "--report", str(path)]) != 0:
        raise RuntimeError(f"the model card of {final} could not be written (see the error above)")


def evaluate_run(dataset, spec, seed: int, folder: Path, settings, command: str) -> dict:
    """The single-run report of the run in `folder` (trained with training seed `seed` on `spec`'s training side),
    with the stage-1 head as a method and the stage-2 alignment gap."""
    final = folder / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(folder / "stage3" / MERGED_DIR, final)
    model, processor = load_model(str(final))
    split = resolve_split(dataset, spec)
    options = EvalOptions(tasks=settings.tasks, baselines=settings.baselines, prompt_seed=settings.prompt_seed,
                          training_seed=seed, batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens,
                          max_test_windows=settings.max_test_windows, eegnet_epochs=settings.eegnet_epochs,
                          fbcnet_epochs=settings.fbcnet_epochs)
    report = evaluate_model(model, processor, dataset, options=options, indices=split)  # provenance: final/
    label_names = list(dataset.features["emotion"].names)
    tested = dataset.select(test_rows(split, settings.max_test_windows))
    seconds = report["runs"][0]["seconds"]  # the language model's and each baseline's, from evaluate_model
    started = time.perf_counter()
    report["runs"][0]["methods"]["stage1_head"] = stage1_head(folder / "stage1", tested, label_names)
    seconds["stage1_head"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    aligned, aligned_processor = load_model(str(folder / "stage2"))
    report["alignment"] = alignment_gap(aligned, aligned_processor, dataset.select(split.test),
                                        evidence_reference(dataset.select(split.train)), seed=seed)
    seconds["alignment"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    write_card(final, report, command)
    seconds["card"] = round(time.perf_counter() - started, 1)
    return report


__all__ = ["evaluate_run", "stage1_head", "write_card"]
