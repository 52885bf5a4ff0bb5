"""Rationale faithfulness: claims checked against the window, next to controls that must score lower."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm.processing.instructions import (
    evidence_reference,
    rationale_claims,
    rationale_text,
    read_evidence_columns,
)
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.rationales import (
    check_claims,
    claim_problems,
    derangement,
    label_consistency,
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
    gold = [rationale_text(rationale_claims(reference, features, i)) for i in range(len(windows))]
    return windows, reference, columns, features, gold


def test_true_rationales_pass_and_the_controls_do_not(evidence):
    _, reference, columns, features, gold = evidence
    report = rationale_report(gold, columns["labels"], features, reference.spread, reference.centroids)
    assert report["faithfulness"] == 1.0 and report["distinct_share"] == 1.0
    assert report["duplicate_or_contradictory_share"] == 0.0
    for kind in ("power", "de", "faa"):
        assert report[f"faithfulness_{kind}"] == 1.0 and report[f"n_claims_{kind}"] > 0
    assert report["faithfulness_gap_vs_shuffled"] > 0.4
    assert report["most_frequent_faithfulness"] < 0.6
    assert report["label_consistency"] > report["shuffled_label_consistency"]


def test_a_wrong_bucket_or_direction_fails(evidence):
    _, reference, _, features, gold = evidence
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
    _, reference, _, features, _ = evidence
    no_faa = type(features)(features.power, features.de, np.full_like(features.faa, np.nan))
    checks = check_claims("frontal alpha asymmetry is shifted left (slightly, -0.10)", no_faa, 0, reference.spread)
    assert checks[0]["checkable"] is False and checks[0]["agrees"] is None


def test_label_consistency_follows_the_centroids():
    spread = np.ones(31)
    centroids = np.zeros((2, 31))
    centroids[0, 0], centroids[1, 0] = 1.0, -1.0  # label 0: delta frontal power up; label 1: down
    up = "delta power is higher over frontal channels (strongly, +3.0 dB)"
    down = up.replace("higher", "lower").replace("+3.0", "-3.0")
    assert label_consistency([up, down, up, "no claims"], [0, 1, 1, 0], spread, centroids) == pytest.approx(2 / 3)


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
        rationale_report(["x"], [0, 1], *evidence[3:4], evidence[1].spread, evidence[1].centroids)
