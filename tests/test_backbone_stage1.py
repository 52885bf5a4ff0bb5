"""Stage 1 with a foundation backbone: fine-tuning trains it, `freeze_backbone` keeps it fixed under a trainable
pooler + emotion head; the saved encoder reloads with its backbone."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMFeatureExtractor
from e2llm.assembly import TINY_EEGPT_CONFIG
from e2llm.backbones_e2llm import feature_extractor_settings
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.processing.dataset_io import save_prepared
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training import stage1

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    windows = synthetic_window_dataset(n_subjects=2, clips_per_class=1, trial_seconds=4, channel_names=CHANNELS)
    return save_prepared(windows, tmp_path_factory.mktemp("data") / "prepared")


@pytest.mark.parametrize("freeze", [True, False])
def test_stage1_freeze_backbone(prepared, tmp_path, freeze):
    from e2llm.processing.dataset_io import load_prepared

    names = load_prepared(prepared).features["emotion"].names
    torch.manual_seed(0)
    config = E2LLMEEGConfig(**TINY_EEGPT_CONFIG, id2label=dict(enumerate(names)))
    E2LLMEEGForEmotionClassification(config).save_pretrained(tmp_path / "start")
    E2LLMFeatureExtractor(**feature_extractor_settings(config)).save_pretrained(tmp_path / "start")
    before = {n: p.detach().clone() for n, p in E2LLMEEGForEmotionClassification.from_pretrained(
        tmp_path / "start").named_parameters()}
    trainer = stage1.main(*stage1.make_parser().parse_dict({
        "model_name_or_path": str(tmp_path / "start"), "dataset_path": str(prepared), "output_dir": str(tmp_path / "out"),
        "max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "report_to": [],
        "save_strategy": "no", "disable_tqdm": True, "logging_steps": 1, "freeze_backbone": freeze, "use_cpu": True}))
    model = trainer.model
    changed = {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}
    backbone = [n for n in changed if n.startswith("encoder.backbone.")]
    head = [n for n in changed if not n.startswith("encoder.backbone.")]
    assert backbone and head
    assert all(changed[n] for n in head)
    assert all(changed[n] != freeze for n in backbone)
    again = E2LLMEEGForEmotionClassification.from_pretrained(tmp_path / "out")
    assert again.config.backbone == "eegpt"
    for name, parameter in again.named_parameters():
        assert torch.equal(parameter, dict(model.named_parameters())[name])
