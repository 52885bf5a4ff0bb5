"""The serving pipeline's plumbing (prompt embeddings, answer prefixes, the label-scoring tree), with the language
model run by Transformers behind the engine interface instead of vLLM: it must give what the Transformers pipeline
gives. `tests/serve/` (`make test-serve`) runs the same comparison against a real vLLM engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import pipeline

from e2llm import SEED_CHANNELS
from e2llm.serving.pipeline import VLLMEEGEmotionPipeline, load_front_end


class TransformersEngine:
    """`VLLMLanguageModel`'s interface computed by an E2LLM's own language model (greedy only)."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def generate(self, embeds, sampling):
        answers = []
        for prompt, kwargs in zip(embeds, sampling):
            assert kwargs["temperature"] == 0.0 and not kwargs["ignore_eos"]
            out = self.model.generate(inputs_embeds=prompt[None], attention_mask=torch.ones(1, len(prompt),
                                                                                            dtype=torch.long),
                                      max_new_tokens=kwargs["max_tokens"], min_new_tokens=kwargs["min_tokens"],
                                      do_sample=False, eos_token_id=kwargs["stop_token_ids"])
            answers.append(out[0].tolist())
        return answers

    @torch.no_grad()
    def score(self, prefixes, candidate_embeds, candidate_ids):
        scores = []
        for prefix in prefixes:
            row = []
            for candidate in candidate_ids:
                extra = [candidate_embeds[t] for t in candidate[:-1]]
                embeds = torch.cat([prefix, torch.stack(extra)]) if extra else prefix
                hidden = self.model.model.language_model(inputs_embeds=embeds[None]).last_hidden_state[0]
                logprobs = F.log_softmax(self.model.lm_head(hidden[len(prefix) - 1:]).double(), -1)
                row.append(sum(float(logprobs[k, t]) for k, t in enumerate(candidate)))
            scores.append(row)
        return torch.tensor(scores, dtype=torch.float64)

    def shutdown(self):
        pass


@pytest.fixture(scope="module")
def pipes(tiny_e2llm, tiny_e2llm_dir):
    model, processor = tiny_e2llm
    reference = pipeline("eeg-emotion", model=model, processor=processor)
    served = VLLMEEGEmotionPipeline(model=load_front_end(tiny_e2llm_dir), processor=processor,
                                    engine=TransformersEngine(model))
    return reference, served


def recordings():
    rng = np.random.default_rng(3)
    return [20 * rng.standard_normal((len(SEED_CHANNELS), int(seconds * 200))) for seconds in (4, 8, 4)]


def windows(result):
    return result["windows"] if "windows" in result else [result]


@pytest.mark.parametrize("return_rationale", [True, False])
def test_serving_pipeline_gives_the_transformers_answers(pipes, return_rationale):
    reference, served = pipes
    signal = {"sampling_rate": 200, "channel_names": list(SEED_CHANNELS), "units": "uV", "batch_size": 2,
              "return_rationale": return_rationale, "max_new_tokens": 12}
    expected, got = reference(recordings(), **signal), served(recordings(), **signal)
    assert [len(windows(r)) for r in got] == [1, 2, 1]
    for want, have in zip(expected, got):
        assert have["label"] == want["label"]
        for a, b in zip(windows(want), windows(have)):
            assert (b["generated_text"], b["rationale"], b["label"]) == (a["generated_text"], a["rationale"],
                                                                          a["label"])
            np.testing.assert_allclose(list(b["scores"].values()), list(a["scores"].values()), atol=1e-5)
    if return_rationale:
        assert any(w["generated_text"] for r in got for w in windows(r))


def test_serving_pipeline_refuses_what_vllm_cannot_do(pipes):
    _, served = pipes
    eeg = recordings()[0]
    signal = {"sampling_rate": 200, "channel_names": list(SEED_CHANNELS), "units": "uV"}
    with pytest.raises(ValueError, match="return_evidence needs the language model's gradients"):
        served(eeg, **signal, return_evidence=True)
    with pytest.raises(ValueError, match="guide_labels=True adds the emotion head's probabilities"):
        served(eeg, **signal, guide_labels=True)
    with pytest.raises(ValueError, match=r"does not support the generation settings \['num_beams'\]"):
        served(eeg, **signal, max_new_tokens=4, num_beams=2)
