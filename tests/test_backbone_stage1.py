"""Stage 1 with a foundation backbone: fine-tuning trains it, `freeze_backbone` keeps it fixed under a trainable
pooler + emotion head; the saved encoder reloads with its backbone."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMFeatureExtractor
from e2llm.assembly import TINY_EEGPT_CONFIG
from e2llm.backbones_e2llm import feature_extractor_settings
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.training.arguments import Stage1Config
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.stage1 import train_stage1

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


@pytest.fixture(scope="module")
def windows():
    return synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)


def _classifier(names):
    torch.manual_seed(0)
    config = E2LLMEEGConfig(**TINY_EEGPT_CONFIG, id2label=dict(enumerate(names)))
    return E2LLMEEGForEmotionClassification(config), E2LLMFeatureExtractor(**feature_extractor_settings(config))


@pytest.mark.parametrize("freeze", [True, False])
def test_stage1_freeze_backbone(windows, tmp_path, freeze):
    names = windows.features["emotion"].names
    model, extractor = _classifier(names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = Stage1Config(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
                        report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=1, freeze_backbone=freeze)
    train_stage1(model, windows, args, extractor)
    changed = {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}
    backbone = [n for n in changed if n.startswith("encoder.backbone.")]
    head = [n for n in changed if not n.startswith("encoder.backbone.")]
    assert backbone and head
    assert all(changed[n] for n in head)
    assert all(changed[n] != freeze for n in backbone)
    again = E2LLMEEGForEmotionClassification.from_pretrained(tmp_path)
    assert again.config.backbone == "eegpt"
    for name, parameter in again.named_parameters():
        assert torch.equal(parameter, dict(model.named_parameters())[name])
