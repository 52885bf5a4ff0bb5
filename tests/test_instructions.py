"""Instruction builders: templates, consistent multi-task answers, rationales for the label, data-driven labels."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from e2llm.answers import parse_answer
from e2llm.eeg_evidence_features import parse_claims
from e2llm.label_evidence_e2llm import MAX_CITED_ITEMS, feature_ids, label_support, parse_label_support
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
from e2llm.training.evaluation.rationales import (
    check_claims,
    cited_items,
    claim_problems,
    label_consistency,
    prompt_items,
)

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
        assert 1 <= len(checks) <= MAX_CITED_ITEMS
        own += [c["agrees"] for c in checks]
        j = (i + len(windows) // 2) % len(windows)  # another trial of the other subject
        other += [c["agrees"] for c in check_claims(rationale, features, j, reference.spread)]
    assert all(own)
    assert np.mean(other) < 0.6


def test_rationales_cite_evidence_for_the_label_without_numbers(instructions, windows):
    names = windows.features["emotion"].names
    reference = evidence_reference(windows)
    columns = read_evidence_columns(windows)
    z = reference.z(reference.features(columns["power_db"], columns["subjects"]))
    rationales, labels, rows = [], [], []
    for i, row in enumerate(instructions):
        if row["task"] == "describe":
            assert parse_label_support(row["completion"], names) is None  # descriptions name no label
            continue
        label = names[row["emotion"]]
        support = parse_label_support(row["rationale"], names)
        assert support["label"] == label and support["against"] != label
        for item in cited_items(row["rationale"]):  # each cited item speaks for the label over the alternative
            supports = {s["item"]: s["support"] for s in label_support(z[i], reference.signatures, label,
                                                                       support["against"])}
            assert supports[item] > 0
        rationales.append(row["rationale"])
        labels.append(label)
        rows.append(i)
    assert label_consistency(rationales, labels, z[rows], reference.signatures) >= 0.9
    shuffled = [rationales[k] for k in np.roll(np.arange(len(rationales)), 3)]
    assert label_consistency(shuffled, labels, z[rows], reference.signatures) < 0.6
    for text in instructions["completion"]:  # the pipeline renders numbers from measurement; targets have none
        assert all(c.value is None and c.bucket for c in parse_claims(text))
        assert not re.search(r"\d", text.split("Emotion:")[0])


def test_rationale_claims_are_distinct_and_uncontradicted(instructions):
    rationales = [r for r in instructions["rationale"] if r]
    assert len(set(rationales)) > 0.5 * len(rationales)
    for rationale in rationales:
        claims = parse_claims(rationale)
        assert len({c.key for c in claims}) == len(claims)  # each claim at most once
        assert not any(claim_problems(rationale).values())


def test_evidence_line_in_canonical_order_and_statistics(windows):
    built = build_instructions(windows, tasks=("emotion",), evidence_in_prompt=True)
    line = built[0]["prompt"].split("\n")[1]
    assert prompt_items(line) == [i for i in feature_ids() if i in prompt_items(line)]  # fixed order, not by size
    statistics = evidence_reference(windows).statistics(evidence_in_prompt=True, provenance={"fingerprint": "f"})
    assert set(statistics) == {"feature_ids", "spread", "reference_power_db", "signatures", "prompt", "abstention",
                               "provenance"}
    assert statistics["feature_ids"] == feature_ids() and len(statistics["spread"]) == len(feature_ids())
    assert set(statistics["reference_power_db"]) == set(CHANNELS)
    assert all(len(v) == 5 for v in statistics["reference_power_db"].values())
    assert statistics["signatures"]["labels"] == list(windows.features["emotion"].names)
    assert statistics["prompt"] == {"evidence_in_prompt": True, "strongest": None}
    assert statistics["provenance"]["fingerprint"] == "f" and statistics["provenance"]["n_windows"] == len(windows)
    assert statistics["provenance"]["synthetic"] is True
    assert statistics["abstention"]["slope"][0] < statistics["abstention"]["slope"][1] < 0
    assert json.loads(json.dumps(statistics)) == statistics  # JSON-ready (processor_config.json)
    from e2llm.evidence_statistics_e2llm import check_statistics

    assert check_statistics(statistics)["abstention"] == statistics["abstention"]  # what a processor accepts
    with pytest.raises(ValueError, match=r"\['abstention'\]\['slope'\] must be \[low, high\]"):
        check_statistics({**statistics, "abstention": {**statistics["abstention"], "slope": [1.0, -1.0]}})


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


def test_evidence_of_a_window_is_computed_once_with_the_values_of_a_fresh_computation(windows, monkeypatch):
    from e2llm.processing import evidence_reference as module

    calls = []
    original = module.band_power_db
    monkeypatch.setattr(module, "band_power_db", lambda eeg, sfreq: calls.append(len(eeg)) or original(eeg, sfreq))
    monkeypatch.setattr(module, "WINDOW_EVIDENCE", module.WindowEvidenceCache())
    rows = np.arange(len(windows))[::-1]
    first = read_evidence_columns(windows.select(rows[::2]))  # a subset, in reverse order
    again = read_evidence_columns(windows.select(rows))  # every window: only the other half is new
    assert calls == [len(rows[::2]), len(rows) - len(rows[::2])]
    eeg = windows.with_format("numpy")[:]["eeg"][rows]
    np.testing.assert_array_equal(again["power_db"], original(eeg, again["sfreq"]))
    np.testing.assert_array_equal(first["power_db"], again["power_db"][::2])
    fresh = module.window_statistics(eeg, again["sfreq"], again["channel_names"])
    for name, values in fresh.items():
        np.testing.assert_array_equal(again["window_stats"][name], values)


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
