"""Label scoring: `score_labels` / `score_emotions` (from one prefix pass and its cache) against a naive per-label
log-likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2llm import LABEL_PREFIX, build_tiny_e2llm

# Short test recordings are shorter than the 0.1 Hz high-pass kernel; the extractor rightly warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


CHANNELS = ["Fp1", "Fp2", "Cz", "O1"]


def _prompts(processor, n_seconds=(8, 4)):
    """Two prompts of different lengths ending in `Emotion:`, one recording each (2 and 1 windows)."""
    rng = np.random.default_rng(0)
    texts, eeg = [], []
    for i, seconds in enumerate(n_seconds):
        question = "Which emotion does this EEG show?" + " Explain." * i
        conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": question}]}]
        rendered = processor.apply_chat_template(conversation, add_generation_prompt=True)
        texts.append(rendered + LABEL_PREFIX.rstrip())
        eeg.append(20 * rng.standard_normal((len(CHANNELS), seconds * 200)))
    inputs = processor(
        text=texts, eeg=eeg, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt"
    )
    return texts, eeg, inputs


def _naive_loglik(model, single, candidate):
    """log p(candidate tokens | prompt) from one unpadded forward pass over `single` (one prompt) + the candidate."""
    prompt_len = single["input_ids"].shape[1]
    ids = torch.cat([single["input_ids"], torch.tensor([candidate])], dim=1)
    eeg_inputs = {k: single[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    with torch.no_grad():
        logprobs = model(input_ids=ids, **eeg_inputs).logits.float().log_softmax(-1)[0]
    return sum(float(logprobs[prompt_len - 1 + j, tok]) for j, tok in enumerate(candidate))


def test_score_emotions_matches_naive_loglik_from_one_prefix_pass(tiny_e2llm):
    model, processor = tiny_e2llm
    texts, eeg, inputs = _prompts(processor)
    assert inputs["attention_mask"][1].min() == 0  # the second prompt is shorter: left padding is exercised
    # The seven emotions are single tokens of the offline tokenizer; add words it splits, for candidates of
    # different token lengths (right padding of candidates is exercised).
    candidates = processor.label_candidate_ids([*model.config.label_names, "bewilderment", "quiet zest"])
    assert len({len(c) for c in candidates}) > 1

    calls = {"lm_rows": [], "lm_tokens": [], "eeg": 0}

    def on_lm(module, args, kwargs, output):
        calls["lm_rows"].append(kwargs["inputs_embeds"].shape[0])
        calls["lm_tokens"].append(kwargs["inputs_embeds"].shape[1])

    hooks = [
        model.model.language_model.register_forward_hook(on_lm, with_kwargs=True),
        model.model.eeg_encoder.register_forward_hook(lambda *a: calls.__setitem__("eeg", calls["eeg"] + 1)),
    ]
    try:
        eeg_inputs = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
        loglik = model.score_labels(inputs["input_ids"], inputs["attention_mask"], candidates, **eeg_inputs)
        # the 2 prompts once; then the 2 long candidates' later tokens (up to 9) for each prompt, from the cache
        assert calls == {"lm_rows": [2, 4], "lm_tokens": [inputs["input_ids"].shape[1], 9], "eeg": 1}
        with torch.no_grad():
            features = model.get_eeg_features(**eeg_inputs)
        calls.update(lm_rows=[], lm_tokens=[], eeg=0)
        probs = model.score_emotions(inputs["input_ids"], inputs["attention_mask"], candidates[:7],
                                     eeg_features=features)
        assert calls == {"lm_rows": [2], "lm_tokens": [inputs["input_ids"].shape[1]], "eeg": 0}  # single tokens
    finally:
        for hook in hooks:
            hook.remove()
    assert loglik.shape == (2, 9) and probs.shape == (2, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    torch.testing.assert_close(probs, loglik[:, :7].softmax(-1))
    singles = [
        processor(text=t, eeg=e, sampling_rate=200, channel_names=CHANNELS, units="uV", return_tensors="pt")
        for t, e in zip(texts, eeg)
    ]
    naive = torch.tensor([[_naive_loglik(model, single, c) for c in candidates] for single in singles])
    torch.testing.assert_close(loglik, naive, atol=1e-4, rtol=1e-4)


def test_custom_labels_are_read_from_the_config():
    model, processor = build_tiny_e2llm(id2label={0: "calm", 1: "excited", 2: "bored"})
    model.eval()
    assert model.config.label_names == ["calm", "excited", "bored"]
    _, _, inputs = _prompts(processor)
    candidates = processor.label_candidate_ids(model.config.label_names)
    eeg_inputs = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    probs = model.score_emotions(inputs["input_ids"], inputs["attention_mask"], candidates, **eeg_inputs)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="got 2 label candidates but the model has 3 labels"):
        model.score_emotions(inputs["input_ids"], inputs["attention_mask"], candidates[:2], **eeg_inputs)
    with pytest.raises(ValueError, match="at least one token"):
        model.score_labels(inputs["input_ids"], inputs["attention_mask"], [[], [5]], **eeg_inputs)


def test_bad_eeg_inputs_to_scoring_are_named(tiny_e2llm):
    model, processor = tiny_e2llm
    _, _, inputs = _prompts(processor)
    eeg_inputs = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    candidates = processor.label_candidate_ids(model.config.label_names)
    with torch.no_grad():
        features = model.get_eeg_features(**eeg_inputs)
    with pytest.raises(ValueError, match="holds 12 <\\|eeg\\|> tokens but the EEG gives 8"):
        model.score_labels(inputs["input_ids"], inputs["attention_mask"], candidates, eeg_features=features[:2])
    with pytest.raises(ValueError, match="not both"):
        model.score_labels(inputs["input_ids"], inputs["attention_mask"], candidates, eeg_features=features,
                           **eeg_inputs)


@pytest.mark.parametrize(
    ("answer", "prefix"),
    [
        ("Reasoning: alpha is high (+2.0 dB).\nEmotion: fear\nValence: low", "Reasoning: alpha is high (+2.0 dB).\n"),
        ("Reasoning: 10 µV α waves.   \n\n", "Reasoning: 10 µV α waves.\n"),  # no label line: stripped + newline
        ("", "\n"),
        ("**Emotion**: sadness", ""),
    ],
)
def test_label_prompt_ids_keep_the_generated_tokens(tiny_e2llm, answer, prefix):
    from e2llm.scoring_e2llm import label_prompt_ids

    tokenizer = tiny_e2llm[1].tokenizer
    written = tokenizer(answer, add_special_tokens=False)["input_ids"]
    written += [tokenizer.eos_token_id, tokenizer.pad_token_id]
    text, ids = label_prompt_ids(tokenizer, written)
    assert text == answer and tokenizer.decode(ids) == prefix + "Emotion:"
    whole = max(k for k in range(len(written) - 1) if prefix.startswith(tokenizer.decode(written[:k])))
    assert ids[:whole] == written[:whole]  # the model's own tokens up to the cut, then the label prompt
    assert label_prompt_ids(tokenizer, None) == ("", tokenizer("Emotion:", add_special_tokens=False)["input_ids"])
