"""Claims after the label on real recordings from other labs (`tests/fixtures/real`): the cited items are the
label's evidence under the class signatures the model ships, they point to the label, and the list ends once that
evidence is cited, whatever the model would have gone on to write."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from transformers import pipeline

from e2llm import ELECTRODE_NAMES, build_tiny_e2llm
from e2llm.label_evidence_e2llm import (
    class_signatures,
    evidence_label,
    items_for_label,
    parse_label_support,
    select_label_evidence,
)
from e2llm.training.evaluation.rationales import cited_items

_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
REAL = Path(__file__).parent / "fixtures" / "real"
# the model wants to cite three items after the label, whatever they are
ANSWER = ("Reasoning: The evidence favours sadness over fear. Relative to the model's reference: alpha power is "
          "higher over frontal channels (slightly); theta power is higher over central channels (slightly); beta "
          "power is lower over occipital channels (slightly).\nEmotion: sadness")


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    statistics = helpers.statistics(ELECTRODE_NAMES[:-6], spread=2.0, evidence_in_prompt=True, reference_db=5.0)
    ids = statistics["feature_ids"]
    # each label differs from the rest on a few items only, as emotions do: a window has little evidence per label
    n_labels, rng = len(model.config.label_names), np.random.default_rng(1)
    offsets = np.zeros((n_labels, len(ids)))
    for label in range(n_labels):
        offsets[label, rng.choice(len(ids), 3, replace=False)] = rng.choice([-2.0, 2.0], 3)
    labels = np.arange(700) % n_labels
    z = np.random.default_rng(0).normal(0.0, 1.0, (700, len(ids))) + offsets[labels]
    statistics["signatures"] = class_signatures(z, labels, model.config.label_names, ids)
    processor.set_evidence_statistics(statistics)
    return pipeline("eeg-emotion", model=model, processor=processor)


def _windows(path: Path) -> tuple[np.ndarray, list[str]]:
    """4-s windows `(n, n_channels, 800)` µV at 200 Hz of the recording's EEG channels, as recorded."""
    from tests.test_label_evidence_real import _windows as windows

    return windows(path)


@pytest.mark.parametrize("name", ["bdf/multiple_annotation_chans_20s.bdf", "nihon_kohden/MB0400FU.EEG"])
def test_claims_after_the_label_are_its_evidence_and_end_with_it(pipe, name):
    signatures = pipe.processor.evidence_statistics["signatures"]
    windows, channel_names = _windows(REAL / name)
    checked, ended_early = 0, 0
    for eeg in windows:  # one call each: the forced answer's tokens count from each answer's start
        window = pipe(eeg, sampling_rate=200.0, channel_names=channel_names, units="uV",
                      **helpers.forced(pipe, ANSWER, bonus=30.0, extra_tokens=12))
        if window["abstention_reason"] is not None:
            continue
        support = parse_label_support(window["generated_text"], pipe.label_names)
        assert support is not None and window["claim_constraint"]["claims"] >= 1
        z = {item["id"]: item["z"] for item in window["evidence"]["items"] if item.get("z") is not None}
        # the rationale's line (the forced answer's tokens, shifted by the constraint, go on after it)
        line = window["generated_text"].split("\n")[0]
        cited = cited_items(line)
        alone = items_for_label(z, signatures, support["label"])
        together = select_label_evidence(z, signatures, support["label"])
        if alone:
            assert cited and set(cited) <= set(alone)
        elif together["margin"] > 0:
            assert set(cited) == set(together["items"])
        else:
            continue  # nothing measured points to the label: the model chooses
        assert evidence_label(z, signatures, cited) == support["label"]
        evidence = set(alone) or set(together["items"])
        if set(cited) == evidence:  # all of it cited: the list ended there, then the answer's next line
            assert line.endswith(").") and window["generated_text"].startswith(line + "\n")
            ended_early += len(cited) < 3  # where the model wanted a third claim
        checked += 1
    assert checked >= 1
    print(f"{name}: {checked} windows checked, {ended_early} ended before the third claim the model wanted")
