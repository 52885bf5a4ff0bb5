"""The evidence features shared by rationale targets, their checks and the pipeline: one definition, montage-aware."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm import SEED_CHANNELS, build_tiny_e2llm
from e2llm.eeg_evidence_features import (
    BANDS,
    FAA_PAIRS,
    Claim,
    band_power_db,
    bucket_interval,
    bucket_of,
    evidence_features,
    format_claim,
    make_claim,
    montage_support,
    parse_claims,
    remove_unsupported_claims,
)
from e2llm.processing import features


def test_one_band_power_definition_everywhere():
    from e2llm import chain_e2llm, evidence_e2llm
    from e2llm.processing import instructions

    assert BANDS == features.BANDS and FAA_PAIRS == features.FAA_PAIRS
    assert instructions.band_power_db is band_power_db is evidence_e2llm.band_power_db
    assert chain_e2llm.band_power_db is band_power_db  # the chain measures each window with the same function
    windows = np.random.default_rng(0).standard_normal((3, 4, 800)) * 10
    np.testing.assert_allclose(band_power_db(windows, 200.0), 10 * np.log10(features.band_power(windows, 200.0)))


def test_features_relative_to_the_reference():
    names = ["Fp1", "Fp2", "F3", "F4", "O1", "O2"]
    power = np.zeros((1, 5, len(names)))
    power[0, 2, names.index("F4")] = 10.0  # right frontal alpha 10 dB above the reference
    power[0, 3, names.index("O1")] = 4.0
    evidence = evidence_features(power, names, np.zeros((5, len(names))))
    assert evidence.power[0, 3, 4] == pytest.approx(2.0)  # occipital beta: mean of +4 and 0 dB
    assert np.isnan(evidence.power[0, :, 1]).all()  # no central channel
    assert evidence.faa[0] == pytest.approx(np.log(10) / 2)  # one of the two pairs (F4/F3) shifted by ln(10)
    assert evidence.de[0, 3] == pytest.approx(np.log(10) / 20 * 4 / 6)


def test_claims_round_trip_through_their_grammar():
    claims = [make_claim("power", -2.4, 1.0, band="alpha", region="occipital"), make_claim("de", 0.05, 0.1, band="beta"),
              make_claim("faa", 0.3, 0.1, band="alpha")]
    assert [c.bucket for c in claims] == ["strongly", "slightly", "strongly"]
    text = "; ".join(format_claim(c) for c in claims)
    assert text.startswith("alpha power is lower over occipital channels (strongly, -2.4 dB)")
    parsed = parse_claims(text)
    assert [(c.key, c.direction, c.bucket, c.value) for c in parsed] == [
        (c.key, c.direction, c.bucket, round(c.value, 2)) for c in claims]


def test_bucket_edges_and_intervals():
    assert [bucket_of(z) for z in (0.0, 0.99, 1.0, -1.5, 2.0, -7)] == [
        "slightly", "slightly", "moderately", "moderately", "strongly", "strongly"]
    assert bucket_interval("moderately", -1) == (-2.0, -1.0)
    assert bucket_interval("strongly", 1) == (2.0, np.inf)


def test_montage_support_and_the_missing_electrode_warning():
    full = montage_support(list(SEED_CHANNELS))
    assert full.warning is None and full.faa and len(full.regions) == 5
    one = montage_support(["Fp1"])
    assert one.regions == ("frontal",) and not one.faa
    assert "only 1 EEG channel" in one.warning and "occipital" in one.warning
    assert one.supports(Claim("power", "alpha", "frontal", 1, "slightly"))
    assert not one.supports(Claim("power", "alpha", "occipital", 1, "slightly"))
    assert not one.supports(Claim("faa", "alpha", None, 1, "slightly"))
    small = montage_support(["Fp1", "Fp2"], full_montage=["Fp1", "Fp2", "F3"])  # a model trained on 3 electrodes
    assert small.channel_share == pytest.approx(2 / 3) and small.warning is None
    with pytest.raises(ValueError, match="full_montage"):
        montage_support(["Fp1"], full_montage=["EOG"])


def test_unsupported_claims_are_removed_from_a_rationale():
    text = ("Relative to this subject's baseline: alpha power is higher over occipital channels (strongly, +3.0 dB); "
            "theta power is lower over frontal channels (moderately, -1.2 dB); frontal alpha asymmetry is shifted "
            "right (slightly, +0.10).")
    cleaned, removed = remove_unsupported_claims(text, montage_support(["Fp1"]))
    assert [c.kind for c in removed] == ["power", "faa"]
    assert cleaned == ("Relative to this subject's baseline: theta power is lower over frontal channels "
                       "(moderately, -1.2 dB).")
    nothing, _ = remove_unsupported_claims(text, montage_support(["Cz"]))
    assert nothing.endswith("no claim the recorded channels support.") and not parse_claims(nothing)


def test_pipeline_warns_and_never_reports_claims_about_absent_channels():
    import importlib.util
    from pathlib import Path

    from transformers import pipeline

    spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                                  "pipeline_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    model, processor = build_tiny_e2llm()
    processor.set_evidence_statistics(helpers.statistics(SEED_CHANNELS))
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = helpers.eeg_like(1, 800)  # EEG-like noise: white noise would be abstained on ("insufficient evidence")
    # what an untrained model writes is noise: check the rationale path with an answer that names absent regions
    answer = ("Reasoning: Relative to this subject's baseline: alpha power is higher over occipital channels "
              "(strongly, +3.0 dB); frontal alpha asymmetry is shifted left (moderately, -0.20).\nEmotion: sadness")
    with pytest.warns(UserWarning, match="only 1 EEG channel"):
        result = pipe(eeg, sampling_rate=200, channel_names=["Fp1"], units="uV", apply_filters=False,
                      **helpers.forced(pipe, answer))
    assert "occipital" in result["warning"]
    assert result["label"] == "sadness" and not parse_claims(result["rationale"])
    assert [c["text"].split(" (")[0] for c in result["removed_claims"]] == [
        "alpha power is higher over occipital channels", "frontal alpha asymmetry is shifted left"]
    full = pipe(helpers.eeg_like(62, 800, seed=1), sampling_rate=200,
                channel_names=list(SEED_CHANNELS), units="uV", apply_filters=False, max_new_tokens=4)
    assert "warning" not in full


def test_band_power_linear_with_any_bands():
    from e2llm.eeg_evidence_features import band_power

    windows = np.random.default_rng(3).standard_normal((2, 3, 800)) * 10
    linear = band_power(windows, 200.0)
    np.testing.assert_allclose(band_power_db(windows, 200.0), 10 * np.log10(linear))
    custom = band_power(windows, 200.0, bands={"slow": (1.0, 8.0)})
    np.testing.assert_allclose(custom[:, 0], linear[:, 0] + linear[:, 1], rtol=1e-10)  # delta + theta
    np.testing.assert_allclose(band_power_db(windows, 200.0, bands={"slow": (1.0, 8.0)}), 10 * np.log10(custom))
