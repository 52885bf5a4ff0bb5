"""Stage 1's linear-probe phase (LP-FT): only the band-power readout, region tokens and head train in it, at their
own learning rate; the rest of the encoder is trainable again afterwards and trains in the main phase."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMFeatureExtractor
from e2llm.assembly import TINY_EEG_CONFIG
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training import stage1
from e2llm.training.arguments import Stage1Config
from e2llm.training.data import WindowClassificationCollator, WindowRows
from e2llm.training.encoder_pretraining import LINEAR_PROBE_MODULES, linear_probe
from e2llm.training.window_tensors import extract_windows

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


@pytest.fixture(scope="module")
def prepared(windows, tmp_path_factory):
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


def _classifier(names, **overrides):
    torch.manual_seed(0)
    settings = {**TINY_EEG_CONFIG, "band_power_readout": True, "region_tokens": True, "num_output_tokens": 8,
                **overrides}
    config = E2LLMEEGConfig(**settings, id2label=dict(enumerate(names)))
    return E2LLMEEGForEmotionClassification(config), E2LLMFeatureExtractor(sampling_rate=config.sampling_rate)


def _folder(tmp_path, names, **overrides):
    model, extractor = _classifier(names, **overrides)
    model.save_pretrained(tmp_path / "start")
    extractor.save_pretrained(tmp_path / "start")
    return tmp_path / "start", model


def _args(tmp_path, **kwargs):
    return Stage1Config(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[], save_strategy="no",
                        disable_tqdm=True, logging_steps=1, use_cpu=True, **kwargs)


def _run(prepared, start, tmp_path, **fields):
    return stage1.main(*stage1.make_parser().parse_dict({
        "model_name_or_path": str(start), "dataset_path": str(prepared), "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8, "report_to": [], "save_strategy": "no", "disable_tqdm": True,
        "use_cpu": True, **fields}))


def _snapshot(model):
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def test_linear_probe_trains_only_the_linear_paths_at_its_rate(windows, tmp_path):
    model, extractor = _classifier(windows.features["emotion"].names)
    before = _snapshot(model)
    args = _args(tmp_path, num_train_epochs=1, learning_rate=1e-4, linear_probe_epochs=2,
                 linear_probe_learning_rate=5e-2)
    rows = WindowRows(window=torch.arange(len(windows)), labels=torch.tensor(windows["emotion"]))
    probe = linear_probe(model, rows, args, WindowClassificationCollator(extract_windows(windows, extractor)))

    changed = {name: not torch.equal(before[name], p.detach()) for name, p in model.named_parameters()}
    probed = [name for name in changed if name.startswith(LINEAR_PROBE_MODULES)]
    assert probed and all(changed[name] for name in probed)
    assert not any(changed[name] for name in changed if name not in probed)
    assert all(p.requires_grad for p in model.parameters())  # trainable again for the main phase
    assert model.encoder.readout.num_updates.max() > 0  # the readout's standardisation was fitted meanwhile
    assert probe.args.learning_rate == 5e-2 and probe.args.num_train_epochs == 2
    assert probe.state.global_step == 2 * -(-len(windows) // 8)


def test_stage1_probe_then_whole_encoder(windows, prepared, tmp_path):
    start, model = _folder(tmp_path, windows.features["emotion"].names)
    before = _snapshot(model)
    trainer = _run(prepared, start, tmp_path, max_steps=2, learning_rate=1e-2, linear_probe_epochs=1)
    trained = trainer.model
    assert all(not torch.equal(before[name], p.detach()) for name, p in trained.named_parameters())
    again = E2LLMEEGForEmotionClassification.from_pretrained(tmp_path / "out")
    for name, parameter in again.named_parameters():
        assert torch.equal(parameter, dict(trained.named_parameters())[name])


def test_stage1_probe_alone(windows, prepared, tmp_path):
    start, model = _folder(tmp_path, windows.features["emotion"].names)
    before = _snapshot(model)
    trainer = _run(prepared, start, tmp_path, num_train_epochs=0, linear_probe_epochs=1, learning_rate=1e-2)
    trained = dict(trainer.model.named_parameters())
    transformer = [name for name in trained if name.startswith("encoder.layers.")]
    assert transformer and all(torch.equal(before[name], trained[name]) for name in transformer)
    assert any(not torch.equal(before[name], trained[name]) for name in trained if name.startswith("classifier."))
    assert trainer.state.global_step == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_linear_probe_needs_the_readout(windows, prepared, tmp_path):
    start, _ = _folder(tmp_path, windows.features["emotion"].names, band_power_readout=False, region_tokens=False,
                       num_output_tokens=4)
    with pytest.raises(ValueError, match="band_power_readout=True"):
        _run(prepared, start, tmp_path, max_steps=1, linear_probe_epochs=1)


@pytest.mark.parametrize("settings", [{"linear_probe_epochs": -1}, {"linear_probe_learning_rate": 0.0}])
def test_linear_probe_arguments_are_checked(tmp_path, settings):
    with pytest.raises(ValueError, match="linear_probe"):
        _args(tmp_path, **settings)
