"""Instruction builders: templates, consistent multi-task answers, faithful rationales, data-driven labels."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm.answers import parse_answer
from e2llm.eeg_evidence_features import parse_claims
from e2llm.processing.instructions import (
    MULTITASK_FIELDS,
    REGIONS,
    SCENARIOS,
    TEMPLATES,
    build_instructions,
    channel_regions,
    evidence_reference,
    read_evidence_columns,
    templates_for,
)
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.rationales import check_claims, claim_problems

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def instructions(windows):
    return build_instructions(windows, tasks=("emotion", "multitask", "scenario", "describe"), seed=0)


def test_templates_are_defined_once_and_held_out_ones_never_train():
    assert len({t.text for t in TEMPLATES}) == len(TEMPLATES)
    for task in ("emotion", "multitask", "scenario"):
        train, held = templates_for(task, "train"), templates_for(task, "heldout")
        assert train and held and not {t.text for t in train} & {t.text for t in held}
    with pytest.raises(ValueError, match="unknown task"):
        templates_for("sentiment")


def test_training_instructions_use_only_training_templates(instructions):
    held_out = {t.text for t in TEMPLATES if t.held_out}
    assert not held_out & set(instructions["prompt"])
    assert set(instructions["task"]) == {"emotion", "multitask", "scenario", "describe"}


def test_heldout_split_uses_only_heldout_templates(windows):
    zero_shot = build_instructions(windows, tasks=("scenario",), template_split="heldout")
    assert set(zero_shot["prompt"]) == {t.text for t in templates_for("scenario", "heldout")}


def test_answers_parse_back_to_the_window_label(instructions, windows):
    names = windows.features["emotion"].names
    for row in instructions:
        parsed = parse_answer(row["completion"], names, extra_fields=MULTITASK_FIELDS)
        if row["task"] == "describe":
            assert parsed.label is None  # alignment pairs carry no label
            continue
        assert parsed.label == names[row["emotion"]]
        assert parsed.rationale == row["rationale"]


def test_multitask_fields_are_consistent(instructions, windows):
    names = windows.features["emotion"].names
    rows = [r for r in instructions if r["task"] == "multitask"]
    assert rows
    for row in rows:
        fields = parse_answer(row["completion"], names, extra_fields=MULTITASK_FIELDS).fields
        assert None not in fields.values()
        if names[row["emotion"]] == "neutral":
            assert (fields["Valence"], fields["Arousal"], fields["Intensity"]) == ("neutral", "low", "mild")
        elif fields["Arousal"] == "high":
            assert fields["Intensity"] in ("moderate", "strong")


def test_scenario_answer_names_the_labels_scenario(instructions, windows):
    names = windows.features["emotion"].names
    for row in (r for r in instructions if r["task"] == "scenario"):
        fields = parse_answer(row["completion"], names, extra_fields={"Scenario": sorted(set(SCENARIOS.values()))}).fields
        assert fields["Scenario"] == SCENARIOS[names[row["emotion"]]]


def test_rationales_are_faithful_to_their_own_window_only(instructions, windows):
    reference = evidence_reference(windows)
    columns = read_evidence_columns(windows)
    features = reference.features(columns["power_db"], columns["subjects"])
    rows = [i for i, task in enumerate(instructions["task"]) if task != "describe"]
    own, other = [], []
    for i in rows:
        rationale = instructions[i]["rationale"]
        checks = check_claims(rationale, features, i, reference.spread)
        assert [c["kind"] for c in checks] == ["power", "power", "de", "faa"]  # two regional powers, DE, asymmetry
        own += [c["agrees"] for c in checks]
        j = (i + len(windows) // 2) % len(windows)  # another trial of the other subject
        other += [c["agrees"] for c in check_claims(rationale, features, j, reference.spread)]
    assert all(own)
    assert np.mean(other) < 0.6


def test_rationale_claims_are_distinct_and_state_bucket_and_number(instructions):
    rationales = [r for r in instructions["rationale"] if r]
    assert len(set(rationales)) == len(rationales)  # every window gets its own rationale
    for rationale in rationales:
        claims = parse_claims(rationale)
        assert len({c.key for c in claims}) == len(claims)  # each claim at most once
        assert not any(claim_problems(rationale).values())
        assert all(c.value is not None and c.bucket for c in claims)


def test_label_task_answers_with_the_label_alone(windows):
    built = build_instructions(windows, tasks=("label",))
    names = windows.features["emotion"].names
    assert list(built["completion"]) == [f"Emotion: {names[y]}" for y in windows["emotion"]]
    assert set(built["prefill"]) == {"Emotion:"}  # given, not learned
    assert set(built["prompt"]) <= {t.text for t in templates_for("emotion", "train")}
    assert set(build_instructions(windows, tasks=("emotion", "describe"))["prefill"]) == {""}


def test_no_claims_about_regions_without_channels():
    frontal_central = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "C4"]
    data = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=8, channel_names=frontal_central)
    built = build_instructions(data, tasks=("emotion", "describe"))
    claims = [c for text in built["completion"] for c in parse_claims(text)]
    assert claims and {c.region for c in claims if c.kind == "power"} <= {"frontal", "central"}
    no_pairs = synthetic_window_dataset(n_subjects=1, clips_per_class=1, trial_seconds=8, channel_names=["Cz", "O1"])
    assert not any(c.kind == "faa" for t in build_instructions(no_pairs)["completion"] for c in parse_claims(t))


def test_reference_comes_from_the_windows_it_is_given(windows):
    reference = evidence_reference(windows)
    columns = read_evidence_columns(windows)
    for subject, baseline in reference.baseline_db.items():
        np.testing.assert_allclose(baseline, columns["power_db"][columns["subjects"] == subject].mean(axis=0))
    other = build_instructions(windows.select(range(4)), reference=reference)
    own = build_instructions(windows.select(range(4)))
    assert list(other["rationale"]) != list(own["rationale"])  # the baseline is the reference's, not the subset's


def test_labels_come_from_the_data():
    data = synthetic_window_dataset(n_subjects=1, clips_per_class=2, trial_seconds=4, channel_names=CHANNELS,
                                    label_names=["sadness", "neutral", "happiness"])
    built = build_instructions(data, tasks=("emotion",))
    answers = {parse_answer(c, ["sadness", "neutral", "happiness"]).label for c in built["completion"]}
    assert answers == {"sadness", "neutral", "happiness"}


def test_unknown_labels_are_rejected_for_multitask(windows):
    relabelled = windows.cast_column("emotion", windows.features["emotion"].__class__(names=list("abcdefg")))
    with pytest.raises(ValueError, match="no valence/arousal known for label"):
        build_instructions(relabelled, tasks=("multitask",))
    built = build_instructions(relabelled, tasks=("emotion",))  # the basic task works with any label set
    assert parse_answer(built[0]["completion"], list("abcdefg")).label == "abcdefg"[built[0]["emotion"]]


def test_channel_regions_average_matrix():
    matrix = channel_regions(["Fp1", "F3", "Cz", "O1", "EOG"])
    assert matrix.shape == (len(REGIONS), 5)
    np.testing.assert_allclose(matrix[REGIONS.index("frontal")], [0.5, 0.5, 0, 0, 0])
    assert matrix[:, 4].sum() == 0  # not an electrode: no region
