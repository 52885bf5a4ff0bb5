"""Evidence removal (`perturb`), ERASER comprehensiveness and sufficiency (`eraser`) and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm.eeg_evidence_features import BAND_NAMES, band_power_db
from e2llm.training.evaluation.calibration import calibration_summary, fit_temperature
from e2llm.training.evaluation.eraser import eraser_scores
from e2llm.training.evaluation.perturb import (
    apply_band_gains,
    band_stop_gains,
    gains_to_reference,
    item_channels,
    item_mask,
    random_items,
)
from e2llm.training.evaluation.probes import softmax

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "Cz", "T7", "P3", "O1", "O2"]
ALPHA = BAND_NAMES.index("alpha")


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(0)
    t = np.arange(800) / 200.0
    x = rng.standard_normal((12, len(CHANNELS), 800)) * 5
    x[:, 7:] += (10 + 10 * rng.random((12, 1, 1))) * np.sin(2 * np.pi * 10 * t)  # occipital alpha, varying
    return x.astype(np.float32)


def test_items_map_to_bands_and_channels():
    assert item_channels("power:alpha:occipital", CHANNELS).tolist() == [7, 8]
    assert item_channels("faa:alpha", CHANNELS).tolist() == [0, 1, 2, 3]  # F4/F3 and Fp2/Fp1
    assert item_channels("de:beta", CHANNELS).tolist() == list(range(len(CHANNELS)))
    mask = item_mask(["power:alpha:occipital", "de:beta"], CHANNELS)
    assert mask[ALPHA].tolist() == [False] * 7 + [True] * 2 and mask[BAND_NAMES.index("beta")].all()
    assert mask.sum() == 2 + len(CHANNELS)
    rng = np.random.default_rng(0)
    drawn = random_items(["a", "b", "c", "d"], ["a", "b"], rng)
    assert len(drawn) == 2 and not set(drawn) & {"a", "b"}


def test_removal_brings_the_items_to_the_reference_and_keeps_the_rest(windows):
    power = band_power_db(windows, 200.0)
    reference = power.mean(axis=0)
    mask = item_mask(["power:alpha:occipital"], CHANNELS)
    after = band_power_db(apply_band_gains(windows, 200.0, gains_to_reference(power, reference, mask)), 200.0)
    np.testing.assert_allclose(after[:, ALPHA, 7:], np.broadcast_to(reference[ALPHA, 7:], (12, 2)), atol=0.3)
    np.testing.assert_allclose(after[:, :, :7], power[:, :, :7], atol=0.05)  # other channels untouched
    stopped = band_power_db(apply_band_gains(windows, 200.0, band_stop_gains(mask, len(windows))), 200.0)
    assert (stopped[:, ALPHA, 7:] < power[:, ALPHA, 7:] - 10).all()  # a band-stop removes the band's power
    unchanged = apply_band_gains(windows, 200.0, np.ones((12, len(BAND_NAMES), len(CHANNELS))))
    np.testing.assert_allclose(unchanged, windows, atol=1e-4)
    with pytest.raises(ValueError, match="gains"):
        apply_band_gains(windows, 200.0, np.ones((12, 2, len(CHANNELS))))


def _scorer(windows, baselines=None):
    """A stand-in model that reads only occipital alpha relative to 20 dB: label 0 above, label 1 below."""
    alpha = band_power_db(windows, 200.0)[:, ALPHA, 7:].mean(-1) - 20.0
    return softmax(np.stack([alpha, -alpha], 1) / 2.0)


def test_eraser_credits_the_evidence_the_answer_depends_on(windows):
    power = band_power_db(windows, 200.0)
    baselines = np.broadcast_to(power.mean(axis=0), power.shape).copy()
    predicted = _scorer(windows).argmax(1)
    present = [["power:alpha:occipital", "power:beta:frontal", "power:delta:central", "power:gamma:temporal"]] * 12
    cited = [["power:alpha:occipital"]] * 12
    scores = eraser_scores(_scorer, windows, 200.0, CHANNELS, cited, predicted, baselines, present)
    assert scores["n_windows"] == 12 and scores["base_probability"] > 0.5
    assert scores["comprehensiveness"] > 0.1 and abs(scores["random_comprehensiveness"]) < 0.02
    assert abs(scores["sufficiency"]) < 0.05 and scores["random_sufficiency"] > 0.1
    assert scores["comprehensiveness_beats_random"] > 0.9 and scores["sufficiency_beats_random"] > 0.9
    wrong = eraser_scores(_scorer, windows, 200.0, CHANNELS, [["power:beta:frontal"]] * 12, predicted, baselines,
                          present)
    assert wrong["comprehensiveness"] < 0.02 < wrong["random_comprehensiveness"]  # a rationale citing the wrong item
    none = eraser_scores(_scorer, windows, 200.0, CHANNELS, [[]] * 12, predicted, baselines, present)
    assert none == {"n_windows": 0}


def test_temperature_scaling_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    temperature = fit_temperature(3.0 * true_logits, labels)  # three times too sharp
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = calibration_summary(softmax(3.0 * true_logits), labels)
    after = calibration_summary(softmax(3.0 * true_logits, temperature), labels)
    assert after["ece"] < before["ece"] / 2 and after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]  # a temperature never changes the arg-max
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.array([[0.0, -np.inf], [0.0, 1.0]]), [0, 1])


def test_eraser_gives_the_scorer_the_baselines_of_the_windows_it_scores(windows):
    power = band_power_db(windows, 200.0)
    baselines = power + np.arange(12)[:, None, None]  # each window its own baseline
    seen = []

    def scorer(x, base):
        seen.append(base[:, 0, 0].copy())
        return _scorer(x)

    predicted = np.where(np.arange(12) % 3 == 0, -1, 0)  # unparseable answers are left out
    present = [["power:alpha:occipital", "power:beta:frontal"]] * 12
    eraser_scores(scorer, windows, 200.0, CHANNELS, [["power:alpha:occipital"]] * 12, predicted, baselines, present)
    kept = np.flatnonzero(predicted >= 0)
    assert all(np.allclose(b, baselines[kept, 0, 0]) for b in seen)
