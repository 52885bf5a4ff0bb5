"""Stage 1's linear-probe phase (LP-FT): only the band-power readout, region tokens and head train in it, at their
own learning rate; the rest of the encoder is trainable again afterwards and trains in the main phase."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMFeatureExtractor
from e2llm.assembly import TINY_EEG_CONFIG
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.training.arguments import Stage1Config
from e2llm.training.data import EEGClassificationCollator, collator_kwargs, synthetic_window_dataset
from e2llm.training.stage1 import LINEAR_PROBE_MODULES, linear_probe, train_stage1

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


def _classifier(names, **overrides):
    torch.manual_seed(0)
    settings = {**TINY_EEG_CONFIG, "band_power_readout": True, "region_tokens": True, "num_output_tokens": 8,
                **overrides}
    config = E2LLMEEGConfig(**settings, id2label=dict(enumerate(names)))
    return E2LLMEEGForEmotionClassification(config), E2LLMFeatureExtractor(sampling_rate=config.sampling_rate)


def _args(tmp_path, **kwargs):
    return Stage1Config(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[], save_strategy="no",
                        disable_tqdm=True, logging_steps=1, **kwargs)


def _snapshot(model):
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def test_linear_probe_trains_only_the_linear_paths_at_its_rate(windows, tmp_path):
    model, extractor = _classifier(windows.features["emotion"].names)
    before = _snapshot(model)
    args = _args(tmp_path, num_train_epochs=1, learning_rate=1e-4, linear_probe_epochs=2,
                 linear_probe_learning_rate=5e-2)
    collator = EEGClassificationCollator(extractor, **collator_kwargs(windows))
    probe = linear_probe(model, windows, args, collator)

    changed = {name: not torch.equal(before[name], p.detach()) for name, p in model.named_parameters()}
    probed = [name for name in changed if name.startswith(LINEAR_PROBE_MODULES)]
    assert probed and all(changed[name] for name in probed)
    assert not any(changed[name] for name in changed if name not in probed)
    assert all(p.requires_grad for p in model.parameters())  # trainable again for the main phase
    assert model.encoder.readout.num_updates.max() > 0  # the readout's standardisation was fitted meanwhile
    assert probe.args.learning_rate == 5e-2 and probe.args.num_train_epochs == 2
    assert probe.state.global_step == 2 * -(-len(windows) // 8)


def test_stage1_probe_then_whole_encoder(windows, tmp_path):
    model, extractor = _classifier(windows.features["emotion"].names)
    before = _snapshot(model)
    train_stage1(model, windows, _args(tmp_path, max_steps=2, learning_rate=1e-2, linear_probe_epochs=1), extractor)
    assert all(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters())
    again = E2LLMEEGForEmotionClassification.from_pretrained(tmp_path)
    for name, parameter in again.named_parameters():
        assert torch.equal(parameter, dict(model.named_parameters())[name])


def test_stage1_probe_alone(windows, tmp_path):
    model, extractor = _classifier(windows.features["emotion"].names)
    before = _snapshot(model)
    trainer = train_stage1(model, windows, _args(tmp_path, num_train_epochs=0, linear_probe_epochs=1,
                                                 learning_rate=1e-2), extractor)
    transformer = [name for name, _ in model.named_parameters() if name.startswith("encoder.layers.")]
    assert transformer and all(torch.equal(before[name], dict(model.named_parameters())[name]) for name in transformer)
    assert trainer.state.global_step == 0
    assert (tmp_path / "model.safetensors").exists()


def test_linear_probe_needs_the_readout(windows, tmp_path):
    model, extractor = _classifier(windows.features["emotion"].names, band_power_readout=False, region_tokens=False,
                                   num_output_tokens=4)
    with pytest.raises(ValueError, match="band_power_readout=True"):
        train_stage1(model, windows, _args(tmp_path, max_steps=1, linear_probe_epochs=1), extractor)


@pytest.mark.parametrize("settings", [{"linear_probe_epochs": -1}, {"linear_probe_learning_rate": 0.0}])
def test_linear_probe_arguments_are_checked(tmp_path, settings):
    with pytest.raises(ValueError, match="linear_probe"):
        _args(tmp_path, **settings)
