"""Measured evidence in prompts: the statement, training prompts, the processor's saved spreads, the pipeline's
per-window lines (relative to which baseline), and the evaluation's subject baselines."""

from __future__ import annotations

import re

import numpy as np
import pytest

from e2llm import build_tiny_e2llm
from e2llm.eeg_evidence_features import (
    EVIDENCE_OPENING,
    EvidenceFeatures,
    band_power_db,
    bucket_of,
    evidence_features,
    evidence_statement,
    feature_keys,
)
from e2llm.processing.instructions import build_instructions, evidence_reference, read_evidence_columns
from e2llm.training.data import synthetic_window_dataset

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
SFREQ = 200


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=8, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def reference(windows):
    return evidence_reference(windows)


def _numbers(text: str) -> np.ndarray:
    return np.array([float(x) for x in re.findall(r"[+-]\d+\.\d+", text)])


def test_statement_lists_every_feature_in_order_with_its_bucket():
    power = np.arange(25.0).reshape(1, 5, 5) - 12
    features = EvidenceFeatures(power=power, de=np.array([[0.1, -0.2, 0.0, 0.0, 0.3]]), faa=np.array([0.3]))
    spread = np.full(31, 2.0)
    text = evidence_statement(features, spread, 0)
    assert text.startswith(EVIDENCE_OPENING) and text.endswith(".")
    items = text[len(EVIDENCE_OPENING) : -1].split("; ")
    assert len(items) == len(feature_keys())
    for item, (kind, band, region), value in zip(items, feature_keys(), features.flat()[0]):
        assert band in item if kind != "faa" else item.startswith("asymmetry")
        assert region is None or item.startswith(region)
        assert item.endswith(bucket_of(value / 2.0))
        np.testing.assert_allclose(_numbers(item), [value], atol=0.006)


def test_statement_with_strongest_ranks_the_power_deviations():
    power = np.zeros((1, 5, 5))
    power[0, 3, 0], power[0, 1, 4], power[0, 0, 2] = 5.0, -7.0, 1.0  # frontal beta, occipital theta, temporal delta
    features = EvidenceFeatures(power=power, de=np.array([[0.1, -0.4, 0.0, 0.0, 0.2]]), faa=np.array([np.nan]))
    text = evidence_statement(features, np.ones(31), 0, strongest=2)
    assert text == (EVIDENCE_OPENING + "occipital theta -7.0 dB strongly; frontal beta +5.0 dB strongly; theta entropy "
                    "-0.40 nats slightly; gamma entropy +0.20 nats slightly; delta entropy +0.10 nats slightly; alpha "
                    "entropy +0.00 nats slightly; beta entropy +0.00 nats slightly.")  # no frontal pair: no asymmetry


def test_statement_of_a_one_channel_recording_names_only_what_it_has():
    eeg = 20 * np.random.default_rng(0).standard_normal((3, 1, 4 * SFREQ))
    power = band_power_db(eeg, SFREQ)
    text = evidence_statement(evidence_features(power, ["Fp1"], power.mean(axis=0)), np.ones(31), 0)
    assert "frontal" in text and not re.search("central|temporal|parietal|occipital|asymmetry", text)


def test_training_prompts_end_with_the_window_evidence_but_descriptions_do_not(windows, reference):
    rows = build_instructions(windows, tasks=("emotion", "describe"), seed=0, reference=reference,
                              evidence_in_prompt=True, evidence_strongest=3)
    columns = read_evidence_columns(windows)
    features = reference.features(columns["power_db"], columns["subjects"])
    plain = build_instructions(windows, tasks=("emotion", "describe"), seed=0, reference=reference)
    for i, (task, prompt, before) in enumerate(zip(rows["task"], rows["prompt"], plain["prompt"])):
        if task == "describe":
            assert prompt == before
        else:
            assert prompt == before + "\n" + evidence_statement(features, reference.spread, i, strongest=3)
    assert rows["completion"] == plain["completion"]


def test_processor_keeps_the_spreads_through_save_and_load(reference, tmp_path):
    from transformers import AutoProcessor

    _, processor = build_tiny_e2llm()
    assert processor.evidence_spread is None
    processor.set_evidence_prompt(reference.spread.tolist(), strongest=4)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    expected = [None if not np.isfinite(v) else float(v) for v in reference.spread]
    assert loaded.evidence_spread == expected and loaded.evidence_strongest == 4
    with pytest.raises(ValueError, match="one value per evidence feature"):
        processor.set_evidence_prompt([1.0, 2.0])
    with pytest.raises(ValueError, match="must be positive"):
        processor.set_evidence_prompt([0.0] * len(feature_keys()))


@pytest.fixture(scope="module")
def evidence_pipe(reference):
    from transformers import pipeline

    model, processor = build_tiny_e2llm()
    processor.set_evidence_prompt(reference.spread.tolist())
    return pipeline("eeg-emotion", model=model, processor=processor)


def _prompt_texts(pipe, chunks) -> list[str]:
    return [pipe.processor.tokenizer.decode(chunk["prompt_ids"]) for chunk in chunks]


def test_pipeline_writes_each_window_evidence_against_the_given_baseline(evidence_pipe, windows, reference):
    eeg = np.asarray(windows.with_format("numpy")[:2]["eeg"], dtype=np.float32)
    baseline = reference.baseline_db[int(windows[0]["subject"])]
    prepared = evidence_pipe.preprocess({"eeg": eeg[0], "baseline_power": baseline}, sampling_rate=SFREQ,
                                        channel_names=CHANNELS, units="uV", apply_filters=False)
    (text,) = _prompt_texts(evidence_pipe, list(prepared))
    expected = evidence_statement(reference.features(band_power_db(eeg[:1], SFREQ), [windows[0]["subject"]]),
                                  reference.spread, 0)
    line = text[text.index(EVIDENCE_OPENING) :].split("<|im_end|>")[0]
    assert line.split()[::2] == expected.split()[::2]  # the same features and words, numbers to rounding
    np.testing.assert_allclose(_numbers(line), _numbers(expected), atol=0.011)
    result = evidence_pipe({"eeg": eeg[1], "baseline_power": baseline}, sampling_rate=SFREQ, channel_names=CHANNELS,
                           units="uV", apply_filters=False, max_new_tokens=2)
    assert set(result["scores"]) == set(evidence_pipe.label_names)


def test_pipeline_refuses_a_single_window_without_baseline(evidence_pipe, windows):
    eeg = np.asarray(windows[0]["eeg"], dtype=np.float32)
    with pytest.raises(ValueError, match="relative to a reference.*too few for its own mean.*pass baseline="):
        evidence_pipe(eeg, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", max_new_tokens=2)
    with pytest.raises(ValueError, match=r"baseline_power must be \(5 bands, 16 channels\)"):
        evidence_pipe(eeg, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", baseline_power=np.zeros((5, 3)))


def test_pipeline_uses_the_recording_mean_for_a_long_recording(evidence_pipe, windows):
    """Ten windows or more: each window against the mean of all of them (first pass, then the prompts)."""
    recording = np.concatenate([np.asarray(windows[i]["eeg"]) for i in range(10)], axis=-1)
    chunks = list(evidence_pipe.preprocess(recording, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV",
                                           apply_filters=False))
    texts = _prompt_texts(evidence_pipe, chunks)
    assert len(texts) == 10 and len(set(texts)) == 10
    assert chunks[0]["context"].reference.kind == "recording_mean"
    power = band_power_db(recording.reshape(16, 10, -1).transpose(1, 0, 2), SFREQ)
    expected = evidence_pipe.processor.evidence_statements(power, CHANNELS, power.mean(axis=0))
    for text, line in zip(texts, expected):
        np.testing.assert_allclose(_numbers(text[text.index(EVIDENCE_OPENING) :]), _numbers(line), atol=0.011)


def test_a_short_input_is_measured_against_the_shipped_reference(reference, windows):
    """Fewer than ten windows: the reference the model ships (never the two-window mean that mirrors itself)."""
    from transformers import pipeline

    model, processor = build_tiny_e2llm()
    shipped = {name: [3.0, 2.0, 1.0, 0.0, -1.0] for name in CHANNELS}
    processor.set_evidence_statistics({"feature_ids": _ids(), "spread": [None if not np.isfinite(v) else float(v)
                                                                          for v in reference.spread],
                                       "reference_power_db": shipped,
                                       "prompt": {"evidence_in_prompt": True, "strongest": None}})
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    two = np.concatenate([np.asarray(windows[i]["eeg"]) for i in range(2)], axis=-1)
    chunks = list(pipe.preprocess(two, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", apply_filters=False))
    assert chunks[0]["context"].reference.kind == "model_reference"
    power = band_power_db(two.reshape(16, 2, -1).transpose(1, 0, 2), SFREQ)
    expected = processor.evidence_statements(power, CHANNELS, np.array(list(shipped.values())).T)
    for text, line in zip(_prompt_texts(pipe, chunks), expected):
        np.testing.assert_allclose(_numbers(text[text.index(EVIDENCE_OPENING) :]), _numbers(line), atol=0.011)
    result = pipe(two, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", apply_filters=False, max_new_tokens=2)
    assert {w["evidence"]["reference"]["kind"] for w in result["windows"]} == {"model_reference"}


def _ids():
    from e2llm.evidence_statistics_e2llm import FEATURE_IDS

    return list(FEATURE_IDS)


def test_evaluation_states_each_test_window_against_its_subject_training_baseline(monkeypatch):
    from e2llm import E2LLMProcessor
    from e2llm.processing.splits import SplitSpec, resolve_split
    from e2llm.training.evaluation.evaluate import EvalOptions, evaluate_model

    dataset = synthetic_window_dataset(n_subjects=2, clips_per_class=2, trial_seconds=4, channel_names=CHANNELS)
    split = resolve_split(dataset, SplitSpec("trial"))
    train, test = dataset.select(split.training_side), dataset.select(split.test)
    reference = evidence_reference(train)
    model, processor = build_tiny_e2llm(id2label=dict(enumerate(dataset.features["emotion"].names)))
    processor.set_evidence_prompt(reference.spread.tolist())
    seen = []
    original = E2LLMProcessor.evidence_statements
    monkeypatch.setattr(E2LLMProcessor, "evidence_statements",
                        lambda self, power, names, ref: seen.append(ref) or original(self, power, names, ref))
    options = EvalOptions(tasks=("emotion",), baselines=(), max_new_tokens=2, mismatched_eeg=False)
    evaluate_model(model, processor, dataset, options=options, indices=split, provenance=None)
    subjects = np.asarray(test["subject"])
    assert seen and len(seen) % len(subjects) == 0  # one line per test window in each pass over them, in order
    for ref, subject in zip(seen, np.tile(subjects, len(seen) // len(subjects))):
        np.testing.assert_allclose(ref, reference.baseline_db[int(subject)], rtol=0, atol=1e-9)


def test_predict_cli_states_evidence_against_the_baseline_file(reference, tmp_path, capsys):
    mne = pytest.importorskip("mne")
    pytest.importorskip("edfio")
    from e2llm.training.cli import main as cli_main

    model, processor = build_tiny_e2llm()
    processor.set_evidence_prompt(reference.spread.tolist())
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    paths = []
    for name, seconds in (("one_window", 4), ("rest", 12)):
        raw = mne.io.RawArray(20e-6 * rng.standard_normal((len(CHANNELS), seconds * SFREQ)),
                              mne.create_info(CHANNELS, float(SFREQ), "eeg"), verbose="error")
        paths.append(tmp_path / f"{name}.edf")
        mne.export.export_raw(paths[-1], raw, fmt="edf", verbose="error")
    common = [str(paths[0]), "--model", str(tmp_path / "model"), "--max-new-tokens", "2", "--device", "cpu"]
    assert cli_main(["predict", *common]) == 1  # the file is refused, named, with what is needed
    err = capsys.readouterr().err
    assert f"{paths[0]}: failed:" in err and "pass --baseline (a recording" in err  # the CLI's words
    output = tmp_path / "pred.jsonl"
    assert cli_main(["predict", *common, "--baseline", str(paths[1]), "--output", str(output)]) == 0
    assert len(output.read_text().splitlines()) == 2  # the window and the aggregate


@pytest.mark.parametrize("with_baseline", [False, True])
def test_streamed_recording_equals_the_whole_path(evidence_pipe, windows, reference, with_baseline, monkeypatch):
    import e2llm.pipeline_chunks_e2llm as chunks_module

    recording = np.concatenate([np.asarray(windows[i]["eeg"]) for i in range(10)], axis=-1)  # 10 windows
    kwargs = dict(sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", max_new_tokens=3)
    if with_baseline:
        kwargs["baseline_power"] = reference.baseline_db[int(windows[0]["subject"])]
    whole = evidence_pipe(recording, **kwargs)
    with monkeypatch.context() as patch:  # streamed: the reference pass first, its windows kept or computed again
        patch.setattr(chunks_module, "WHOLE_BYTES", 0)
        patch.setattr(chunks_module, "STREAM_WINDOWS", 3)
        streamed = evidence_pipe(recording, **kwargs)
        patch.setattr(chunks_module, "WINDOW_CACHE_BYTES", 0)
        recomputed = evidence_pipe(recording, **kwargs)
    assert len(streamed["windows"]) == 10
    for a, b, c in zip(streamed["windows"], whole["windows"], recomputed["windows"]):
        assert a["generated_text"] == b["generated_text"] == c["generated_text"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), rtol=0, atol=1e-5)
        np.testing.assert_allclose(list(c["scores"].values()), list(b["scores"].values()), rtol=0, atol=1e-5)


def test_evidence_is_stated_in_microvolts_for_an_encoder_taking_millivolts(windows):
    from e2llm import E2LLMFeatureExtractor

    eeg = np.asarray(windows[0]["eeg"], dtype=np.float32)
    extractor = E2LLMFeatureExtractor(normalization="none", output_unit_uv=1000.0)  # EEGPT's contract: windows in mV
    out = extractor(eeg, sampling_rate=SFREQ, channel_names=CHANNELS, units="uV", apply_filters=False,
                    return_band_power=True, return_tensors="np")
    np.testing.assert_allclose(out["eeg_values"][0], eeg / 1000.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["eeg_band_power"], band_power_db(eeg[None], SFREQ), atol=1e-4)
