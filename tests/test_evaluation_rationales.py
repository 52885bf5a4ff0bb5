"""Rationale faithfulness: claims checked against the window, next to controls that must score lower."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm.label_evidence_e2llm import class_signatures
from e2llm.processing.instructions import (
    build_instructions,
    description_text,
    evidence_reference,
    label_rationale,
    read_evidence_columns,
)
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.rationales import (
    check_claims,
    cited_items,
    claim_problems,
    copy_report,
    derangement,
    label_consistency,
    line_claims,
    prompt_items,
    rationale_report,
    split_rationale_report,
)

CHANNELS = ["Fp1", "Fp2", "AF3", "AF4", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1",
            "O2"]


@pytest.fixture(scope="module")
def evidence():
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=2, trial_seconds=8, channel_names=CHANNELS)
    reference = evidence_reference(windows)
    columns = read_evidence_columns(windows)
    features = reference.features(columns["power_db"], columns["subjects"])
    names = reference.label_names
    gold = [label_rationale(reference, features, i, names[y]) for i, y in enumerate(columns["labels"])]
    descriptions = [description_text(reference, features, i) for i in range(len(windows))]
    return windows, reference, columns, features, gold, descriptions


def test_true_rationales_pass_and_the_controls_do_not(evidence):
    _, reference, columns, features, gold, descriptions = evidence
    labels = [reference.label_names[y] for y in columns["labels"]]
    report = rationale_report(gold, labels, features, reference.spread, reference.signatures)
    assert report["faithfulness"] == 1.0 and report["duplicate_or_contradictory_share"] == 0.0
    assert report["label_consistency"] >= 0.9 and report["shuffled_label_consistency"] < 0.5
    assert report["support_stated_share"] == 1.0 and report["support_matches_label"] == 1.0
    assert report["faithfulness_gap_vs_shuffled"] > 0.3
    described = rationale_report(descriptions, labels, features, reference.spread, reference.signatures)
    for kind in ("power", "de", "faa"):  # descriptions state every kind of claim, all true
        assert described[f"faithfulness_{kind}"] == 1.0 and described[f"n_claims_{kind}"] > 0
    assert described["most_frequent_faithfulness"] < 0.6 and described["support_stated_share"] == 0.0


def test_a_wrong_bucket_or_direction_fails(evidence):
    _, reference, _, features, gold, _ = evidence
    claims = check_claims(gold[0], features, 0, reference.spread)
    assert all(c["agrees"] for c in claims)
    first = claims[0]["claim"]
    flipped = first.text.replace("higher", "lower") if first.direction > 0 else first.text.replace("lower", "higher")
    assert check_claims(flipped, features, 0, reference.spread)[0]["agrees"] is False
    other_bucket = "slightly" if first.bucket != "slightly" else "strongly"
    assert check_claims(first.text.replace(first.bucket, other_bucket), features, 0, reference.spread)[0]["agrees"] is False


def test_duplicates_and_contradictions_are_found():
    claim = "alpha power is lower over frontal channels (moderately, -2.1 dB)"
    assert claim_problems(f"{claim}; {claim.replace('-2.1', '-1.9')}") == {"duplicate": True, "contradictory": False}
    opposite = "alpha power is higher over frontal channels (moderately, +2.0 dB)"
    assert claim_problems(f"{claim}; {opposite}")["contradictory"]
    assert claim_problems("alpha power is higher over frontal channels (moderately, -2.0 dB)")["contradictory"]
    assert claim_problems(claim) == {"duplicate": False, "contradictory": False}


def test_claims_about_absent_features_are_not_checkable(evidence):
    _, reference, _, features, _, _ = evidence
    no_faa = type(features)(features.power, features.de, np.full_like(features.faa, np.nan))
    checks = check_claims("frontal alpha asymmetry is shifted left (slightly, -0.10)", no_faa, 0, reference.spread)
    assert checks[0]["checkable"] is False and checks[0]["agrees"] is None


def test_label_consistency_follows_the_signatures():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    z = rng.normal(0, 0.5, (100, 31))
    z[:, 0] += np.where(labels == 0, 1.0, -1.0)  # label a: delta frontal power up; label b: down
    signatures = class_signatures(z, labels, ["a", "b"])
    up, down = "delta power is higher over frontal channels (strongly)", "beta power is lower over occipital channels"
    windows = np.array([[3.0] + [0.0] * 30, [-3.0] + [0.0] * 30, [3.0] + [0.0] * 30, [0.0] * 31])
    # consistency reads the cited item at its measured value: window 1's delta is down, which points to "b" (its
    # answer) whatever the claim says; window 2's is up and it answers "b"; window 3 cites nothing
    assert label_consistency([up, up, up, "no claims"], ["a", "b", "b", "a"], windows, signatures) == pytest.approx(2 / 3)
    assert cited_items(f"{up}; {up}; {down} (moderately)") == ["power:delta:frontal", "power:beta:occipital"]


def test_copying_the_evidence_line_is_measured():
    line = ("Measured relative to baseline: frontal delta -0.7 dB slightly; central alpha +2.1 dB strongly; "
            "gamma entropy +0.09 nats moderately; asymmetry +0.21 slightly.")
    assert prompt_items(line) == ["power:delta:frontal", "power:alpha:central", "de:gamma", "faa:alpha"]
    claims = line_claims(line)
    assert [(c.direction, c.bucket) for c in claims] == [(-1, "slightly"), (1, "strongly"), (1, "moderately"),
                                                         (1, "slightly")]
    copied = "; ".join(c.text for c in claims[:2])
    chosen = "alpha power is higher over central channels (strongly); frontal alpha asymmetry is shifted right"
    report = copy_report([copied, chosen], [line, line])
    assert report["first_items_share"] == 0.5  # the copy cites the line's first items; the other does not
    assert report["ngram_copy_share"] == 0.0  # in the claim grammar, not the line's words
    verbatim = copy_report(["frontal delta -0.7 dB slightly; central alpha", chosen], [line, line])
    assert 0 < verbatim["ngram_copy_share"] < 1


def test_derangement_moves_every_window():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 101):
        permutation = derangement(n, rng)
        assert sorted(permutation) == list(range(n)) and not (permutation == np.arange(n)).any()


def test_split_report_uses_the_training_reference(evidence):
    windows = evidence[0]
    train, test = windows.select(range(0, len(windows), 2)), windows.select(range(1, len(windows), 2))
    names = windows.features["emotion"].names
    report = split_rationale_report(["I think it is sad."] * len(test), [names[0]] * len(test), train, test)
    assert report["share_with_claims"] == 0.0 and np.isnan(report["faithfulness"])
    assert 0.0 <= report["gold_label_consistency"] <= 1.0
    with pytest.raises(ValueError, match="give one each"):
        rationale_report(["x"], ["a", "b"], evidence[3], evidence[1].spread, evidence[1].signatures)


def test_training_prompts_can_carry_the_line_the_copy_metric_reads(evidence):
    windows = evidence[0]
    built = build_instructions(windows, tasks=("emotion",), evidence_in_prompt=True)
    report = copy_report(list(built["rationale"]), list(built["prompt"]))
    assert report["first_items_share"] < 0.3  # targets cite evidence for the label, not the line's first items
