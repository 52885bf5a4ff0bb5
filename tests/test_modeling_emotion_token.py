"""The encoder's emotion token: the stage-1 head lives in the encoder and its class probabilities reach the language
model as the last EEG token of each window."""

from __future__ import annotations

import pytest
import torch

from e2llm import E2LLMEEGConfig, E2LLMEEGEncoder, assemble_e2llm, build_offline_tokenizer
from e2llm.assembly import TINY_TEXT_CONFIG
from e2llm.electrodes import ELECTRODE_NAMES
from e2llm.modeling_eeg_encoder import E2LLMEEGForEmotionClassification
from e2llm.training.encoder_pretraining import LINEAR_PROBE_MODULES
from e2llm.training.starting_models import classifier_from_e2llm, load_encoder_weights, set_label_names

CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, patch_size=400,
              band_power_readout=True, region_tokens=True, emotion_token=True, num_output_tokens=9)
NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "Cz", "O1", "O2"]


def _batch(n=4):
    torch.manual_seed(0)
    return torch.randn(n, len(NAMES), 800), torch.tensor([[ELECTRODE_NAMES.index(x) for x in NAMES]] * n)


def test_the_last_token_is_the_heads_reading_of_the_others():
    torch.manual_seed(0)
    encoder = E2LLMEEGEncoder(E2LLMEEGConfig(**CONFIG)).eval()
    eeg, ids = _batch()
    out = encoder(eeg, ids)
    assert encoder.pooler.queries.shape[0] == 2 and out.pooler_output.shape == (4, 9, 32)
    others = out.pooler_output[:, :-1]
    logits = encoder.emotion_token.classifier(others.mean(1))
    torch.testing.assert_close(out.emotion_logits, logits)
    expected = logits.softmax(-1) @ encoder.emotion_token.label_embeddings
    torch.testing.assert_close(out.pooler_output[:, -1], expected)
    # a different class reading changes the token: the label embeddings start distinct
    assert torch.cdist(encoder.emotion_token.label_embeddings, encoder.emotion_token.label_embeddings).triu(1).max() > 1


def test_the_classifier_uses_the_encoders_head():
    torch.manual_seed(0)
    model = E2LLMEEGForEmotionClassification(E2LLMEEGConfig(**CONFIG)).eval()
    assert not hasattr(model, "classifier")
    eeg, ids = _batch()
    out = model(eeg, ids, labels=torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out.logits, model.encoder(eeg, ids).emotion_logits)
    torch.testing.assert_close(out.embeddings, out.pooler_output[:, :-1].mean(1))
    out.loss.backward()
    assert model.encoder.emotion_token.classifier.weight.grad.abs().sum() > 0
    assert any(name.startswith(LINEAR_PROBE_MODULES) for name, _ in model.named_parameters()
               if name.startswith("encoder.emotion_token."))


def test_the_stage1_head_reaches_the_e2llm(tmp_path):
    torch.manual_seed(0)
    labels = dict(enumerate(["neutral", "happy", "sad"]))
    model, _ = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG, eeg_config=CONFIG,
                              id2label=labels)
    assert model.config.num_eeg_tokens == 9
    classifier = classifier_from_e2llm(model, list(labels.values()))
    with torch.no_grad():
        classifier.encoder.emotion_token.classifier.weight.normal_()
    classifier.save_pretrained(tmp_path)
    load_encoder_weights(model, str(tmp_path))
    eeg, ids = _batch()
    model.eval(), classifier.eval()
    torch.testing.assert_close(model.model.eeg_encoder(eeg, ids).emotion_logits, classifier(eeg, ids).logits)

    other = classifier_from_e2llm(model, ["a", "b", "c", "d", "e"])  # a new head for another label set
    assert other.encoder.emotion_token.classifier.out_features == 5
    torch.testing.assert_close(other.encoder.readout.weight.weight, model.model.eeg_encoder.readout.weight.weight)


def test_a_new_label_set_gets_a_new_head_that_takes_stage1_weights(tmp_path):
    torch.manual_seed(0)
    model, processor = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG, eeg_config=CONFIG)
    assert model.model.eeg_encoder.emotion_token.classifier.out_features == 7
    names = ["negative", "neutral", "positive"]
    stage1 = classifier_from_e2llm(model, names)
    stage1.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="same labels"):
        load_encoder_weights(model, str(tmp_path))  # a 3-class head into the 7-class one
    set_label_names(model, processor, names)
    head = model.model.eeg_encoder.emotion_token
    assert head.classifier.out_features == 3 and head.label_embeddings.shape == (3, 32)
    assert head.label_embeddings.std() > 0.5  # initialised, not left empty
    load_encoder_weights(model, str(tmp_path))
    eeg, ids = _batch()
    model.eval(), stage1.eval()
    torch.testing.assert_close(model.model.eeg_encoder(eeg, ids).emotion_logits, stage1(eeg, ids).logits)


@pytest.mark.parametrize("change, message", [
    ({"num_output_tokens": 7}, "leaves no pooled token next to the 6 region tokens and the emotion token; use at "
                               "least 8"),
    ({"region_tokens": False, "num_output_tokens": 1}, "leaves no pooled token next to the emotion token; use at "
                                                       "least 2"),
])
def test_config_refuses_too_few_tokens(change, message):
    with pytest.raises(Exception, match=message):
        E2LLMEEGConfig(**{**CONFIG, **change})
