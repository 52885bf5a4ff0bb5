"""Label scoring from the generation's own logits and cache equals the prefix pass over prompt + rationale, for
single- and multi-token labels, with the dynamic and the static cache; and it saves that pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from e2llm import build_tiny_e2llm
from e2llm.generation_e2llm import generate_and_score, generation_defaults
from e2llm.scoring_e2llm import label_prompt_ids, left_pad, score_candidates

pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")
CHANNELS = ["Fz", "Cz", "Pz", "O1"]


class ForceAnswer(LogitsProcessor):
    """Writes `answers[i]` (token ids, then EOS) into row i whatever the model prefers; raw logits stay the model's."""

    def __init__(self, answers, prompt_len: int, eos: int):
        self.answers, self.prompt_len, self.eos = answers, prompt_len, eos

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, -float("inf"))
        for row, answer in enumerate(self.answers):
            forced[row, answer[step] if step < len(answer) else self.eos] = 0.0
        return forced


def _setup(id2label=None):
    model, processor = build_tiny_e2llm(id2label=id2label)
    model.eval()
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eegs = [20 * np.random.default_rng(i).standard_normal((4, 800)) for i in range(3)]
    inputs = processor(text=[prompt] * 3, eeg=eegs, sampling_rate=200, channel_names=CHANNELS, units="uV",
                       return_tensors="pt", padding=False)
    prompts = [torch.tensor(row) for row in inputs["input_ids"].tolist()]
    prompts[1] = torch.cat([prompts[1][:3], prompts[1]])  # rows of different lengths: left padding in the batch
    features = model.get_eeg_features(inputs["eeg_values"], inputs["eeg_channel_ids"], inputs["eeg_channel_mask"])
    return model, processor, prompts, features


def _answers(tokenizer, labels):
    texts = [f"Reasoning: alpha power is lower over frontal channels (strongly).\nEmotion: {labels[0]}",
             "Reasoning: theta is high.\nEmotion:",  # stops after the label line: the EOS step's logits are the labels
             f"no label line here {labels[-1]}"]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _reference(model, processor, prompts, features, generated, candidates):
    tails = [label_prompt_ids(processor.tokenizer, row)[1] for row in generated]
    rows = [torch.cat([p, torch.tensor(t)]) for p, t in zip(prompts, tails)]
    ids, mask = left_pad(rows, processor.tokenizer.pad_token_id)
    return score_candidates(model, ids, mask, candidates, eeg_features=features)


@pytest.mark.parametrize("id2label", [None, {0: "very happy", 1: "quite sad", 2: "fear", 3: "calm and content"}])
@pytest.mark.parametrize("cache", [None, "static"])
def test_scores_from_the_generation_equal_the_prefix_pass(id2label, cache):
    model, processor, prompts, features = _setup(id2label)
    tokenizer = processor.tokenizer
    candidates = processor.label_candidate_ids(model.config.label_names)
    assert any(len(c) > 1 for c in candidates) == (id2label is not None)
    answers = _answers(tokenizer, model.config.label_names)
    width = max(len(p) for p in prompts)
    kwargs = {"max_new_tokens": max(len(a) for a in answers) + 2, "do_sample": False,
              "logits_processor": LogitsProcessorList([ForceAnswer(answers, width, tokenizer.eos_token_id)])}
    if cache:
        kwargs["cache_implementation"] = cache
    with torch.no_grad():
        got = generate_and_score(model, tokenizer, prompts, features, candidates, tokenizer.pad_token_id, kwargs)
        reference = _reference(model, processor, prompts, features, [a + [tokenizer.eos_token_id] for a in answers],
                               candidates)
    assert got.texts[0].startswith("Reasoning: alpha power is lower") and got.texts[2].startswith("no label line")
    # rows 0 and 1 line up (with multi-token labels only where the cache can grow); row 2 has no label line
    reused = cache is None or id2label is None
    assert got.from_generation == [reused, reused, False]
    torch.testing.assert_close(got.scores, reference.float(), atol=2e-5, rtol=1e-4)


def test_single_token_labels_need_no_pass_after_generate():
    model, processor, prompts, features = _setup()
    tokenizer = processor.tokenizer
    candidates = processor.label_candidate_ids(model.config.label_names)
    answers = [tokenizer(f"Reasoning: x.\nEmotion: {name}", add_special_tokens=False)["input_ids"]
               for name in model.config.label_names[:3]]
    width = max(len(p) for p in prompts)
    kwargs = {"max_new_tokens": 12, "logits_processor": LogitsProcessorList([ForceAnswer(answers, width,
                                                                                         tokenizer.eos_token_id)])}
    calls = []
    hook = model.model.language_model.register_forward_hook(lambda *args: calls.append(1))
    generate = model.generate
    passes_in_generate = []

    def counted(*args, **kw):
        out = generate(*args, **kw)
        passes_in_generate.append(len(calls))
        return out

    model.generate = counted
    try:
        with torch.no_grad():
            got = generate_and_score(model, tokenizer, prompts, features, candidates, tokenizer.pad_token_id, kwargs)
    finally:
        hook.remove()
        del model.generate
    assert got.from_generation == [True] * 3
    assert len(calls) == passes_in_generate[0]  # no language-model pass after generate


def test_generation_defaults():
    assert generation_defaults(torch.device("cpu"), {"max_new_tokens": 4}) == {"max_new_tokens": 4}
    assert generation_defaults(torch.device("cuda"), {})["cache_implementation"] == "static"
    assert generation_defaults(torch.device("cuda"), {"cache_implementation": "dynamic"})["cache_implementation"] == (
        "dynamic")
    with pytest.raises(ValueError, match="num_return_sequences must be 1"):
        generation_defaults(torch.device("cpu"), {"num_return_sequences": 2})
