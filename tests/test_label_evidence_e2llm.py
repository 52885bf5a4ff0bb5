"""Class signatures, label support, the label-support grammar and the abstention rule (`e2llm.label_evidence_e2llm`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2llm.eeg_evidence_features import make_claim, parse_claims
from e2llm.electrodes import SEED_CHANNELS
from e2llm.label_evidence_e2llm import (
    abstention_ranges,
    abstention_reason,
    claim_words,
    class_signatures,
    evidence_label,
    feature_ids,
    format_label_support,
    items_for_label,
    label_log_likelihoods,
    label_support,
    most_confusable,
    parse_feature_id,
    parse_label_support,
    select_label_evidence,
    window_statistics,
)
from e2llm.processing.synthetic import NON_EMOTION_KINDS, SyntheticEEG, SyntheticEEGConfig

LABELS = ["happiness", "sadness", "fear"]


@pytest.fixture(scope="module")
def signatures():
    rng = np.random.default_rng(0)
    means = np.zeros((3, 31))
    means[0, 0], means[1, 0], means[1, 12], means[2, 12] = 2.0, -2.0, 1.5, -1.5  # delta frontal; alpha temporal
    labels = np.repeat([0, 1, 2], 200)
    z = means[labels] + rng.normal(0, 0.5, (600, 31))
    z[:, 4] = np.nan  # a region without channels
    return class_signatures(z, labels, LABELS)


def test_signatures_are_class_means_in_spread_units(signatures):
    mean = np.array([[np.nan if v is None else v for v in row] for row in signatures["mean_z"]])
    assert signatures["labels"] == LABELS and signatures["feature_ids"] == feature_ids()
    np.testing.assert_allclose(mean[:, 0], [2.0, -2.0, 0.0], atol=0.1)
    assert np.isnan(mean[:, 4]).all() and signatures["within_sd"][4] is None
    assert 0.45 < signatures["within_sd"][0] < 0.55 and signatures["n_windows"] == [200, 200, 200]
    assert json.loads(json.dumps(signatures)) == signatures
    with pytest.raises(ValueError, match="labels in 0..2"):
        class_signatures(np.zeros((2, 31)), [0, 3], LABELS)


def test_support_speaks_for_the_label_whose_signature_fits(signatures):
    window = {"power:delta:frontal": 2.1, "power:alpha:temporal": 1.4, "de:gamma": 0.1}
    rows = label_support(window, signatures, "happiness", against="sadness")
    assert [r["item"] for r in rows][0] == "power:delta:frontal" and rows[0]["support"] > 0
    assert all(r["against"] == "sadness" for r in rows) and len(rows) == 3  # only measured items
    assert rows == sorted(rows, key=lambda r: -r["support"])
    typical = {r["item"]: r["typicality"] for r in rows}
    assert typical["power:delta:frontal"] > 0.9 and typical["power:alpha:temporal"] < 0.1  # happiness: alpha ~0
    # the alternative the window fits best after happiness: sadness matches its alpha but is 4 spreads off its delta
    # (8 within-class SDs); fear is 2.1 spreads off the delta and 2.9 off the alpha (4.2 and 5.8 SDs)
    assert most_confusable(window, signatures, "happiness") == "fear"
    scores = label_log_likelihoods(window, signatures)
    assert max(scores, key=scores.get) == "happiness"
    with pytest.raises(ValueError, match="not one of the signatures' labels"):
        label_support(window, signatures, "anger")


def test_selected_evidence_points_to_the_label(signatures):
    z = np.zeros(31)
    z[0], z[12] = 2.0, 1.5  # happiness's delta and sadness's alpha
    chosen = select_label_evidence(z, signatures, "happiness")
    assert chosen["items"][0] == "power:delta:frontal" and chosen["margin"] > 0 and chosen["favoured"]
    assert evidence_label(z, signatures, chosen["items"]) == "happiness"
    for_sadness = select_label_evidence(z, signatures, "sadness", max_items=1)
    assert for_sadness["items"] == ["power:alpha:temporal"] and not for_sadness["favoured"]  # happiness fits better
    assert evidence_label(z, signatures, []) is None


def test_items_for_label_point_to_it_alone_and_together(signatures):
    rng = np.random.default_rng(1)
    found = 0
    for z in rng.normal(0, 2, (40, 31)):
        for label in LABELS:
            items = items_for_label(z, signatures, label)
            found += len(items)
            assert all(evidence_label(z, signatures, [item]) == label for item in items)
            if items:
                assert evidence_label(z, signatures, items) == label
                assert evidence_label(z, signatures, rng.permutation(items)[: max(1, len(items) // 2)]) == label
    assert found > 0
    z = np.zeros(31)
    z[0] = 2.0  # happiness's delta, far from sadness's: for happiness alone
    assert items_for_label(z, signatures, "happiness")[0] == "power:delta:frontal"
    assert "power:delta:frontal" not in items_for_label(z, signatures, "sadness")


def test_label_support_sentence_round_trips():
    names = ["happiness", "sadness", "very sad"]
    text = format_label_support("very sad", "sadness", favoured=False) + ". Relative to baseline: x."
    assert parse_label_support(text, names) == {"label": "very sad", "against": "sadness", "favoured": False,
                                                "text": "The evidence only partly favours very sad over sadness"}
    assert parse_label_support("so the evidence favours Happiness over SADNESS.", names)["label"] == "happiness"
    assert parse_label_support("so the evidence favours anger over fear.", names) is None


def test_claim_words_leave_out_the_number():
    for kind, band, region, value in (("power", "alpha", "frontal", -5.5), ("de", "gamma", None, 0.12),
                                      ("faa", "alpha", None, 0.31)):
        claim = make_claim(kind, value, 1.0, band=band, region=region)
        words = claim_words(claim)
        assert not any(ch.isdigit() for ch in words)
        (parsed,) = parse_claims(words)
        assert (parsed.key, parsed.direction, parsed.bucket, parsed.value) == (claim.key, claim.direction,
                                                                               claim.bucket, None)
    assert parse_feature_id("power:beta:occipital") == ("power", "beta", "occipital")
    with pytest.raises(ValueError, match="unknown evidence feature id"):
        parse_feature_id("power:beta:nose")


@pytest.fixture(scope="module")
def generated():
    generator = SyntheticEEG(SyntheticEEGConfig(preprocessed=True), seed=0)
    emotion = np.stack([generator.trial(s, t, t % 7, 800) for s in (1, 2) for t in range(1, 25)])
    other = {kind: np.stack([generator.non_emotion_trial(kind, 3, t, 800) for t in range(6)])
             for kind in NON_EMOTION_KINDS}
    return emotion, other


def _reasons(windows, statistics=None):
    stats = window_statistics(windows, 200.0, list(SEED_CHANNELS))
    return [abstention_reason({k: v[i] for k, v in stats.items()}, statistics) for i in range(len(windows))]


def test_abstention_on_signals_that_are_not_emotion_eeg(generated):
    emotion, other = generated
    statistics = {"abstention": abstention_ranges(window_statistics(emotion, 200.0, list(SEED_CHANNELS)))}
    expected = {"noise": "not like the training EEG (spectrum flat like noise", "flat": "flat signal",
                "line_noise": "line noise dominates", "muscle": "muscle artefact dominates",
                "eyes_closed": "not like the training EEG (posterior alpha"}
    for kind, start in expected.items():
        assert all(r is not None and r.startswith(start) for r in _reasons(other[kind], statistics)), kind
    assert _reasons(emotion, statistics) == [None] * len(emotion)
    assert _reasons(emotion) == [None] * len(emotion)  # the default ranges without a model's


def test_line_noise_over_eeg_is_not_abstained(generated):
    emotion, other = generated
    noisy = emotion[:6] + other["line_noise"]  # mains on top of EEG: the notch removes it, the EEG is there
    assert _reasons(noisy) == [None] * 6
