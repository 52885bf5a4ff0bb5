"""The emotion head's guidance of the written labels (`e2llm.label_guidance_e2llm`): its weighted log-probabilities
added at the label's tokens, a whole label getting exactly ``weight * (log p(label) - log p(top))``, nothing elsewhere;
chosen on validation windows by stage 3 and said in every result."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import LogitsProcessor, LogitsProcessorList, pipeline

from e2llm import (
    E2LLMConfig,
    E2LLMForConditionalGeneration,
    build_offline_tokenizer,
    build_tiny_e2llm,
    parse_answer,
)
from e2llm.claim_constraints_e2llm import token_texts
from e2llm.label_guidance_e2llm import HeadGuidedLabelsLogitsProcessor, label_slot
from e2llm.processing.splits import SplitSpec, resolve_split
from e2llm.training.data import synthetic_window_dataset
from e2llm.training.evaluation.calibration import (
    balanced_correct,
    calibrate_label_sources,
    compare_label_deciders,
)
from tests.fixtures.pipeline_helpers import eeg_like
from tests.test_label_sources import CHANNELS, LABELS, _model

NAMES = list(LABELS.values())


def _processor(tokenizer, head, weight=2.0, prompt=""):
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return HeadGuidedLabelsLogitsProcessor(tokenizer, torch.tensor([head]), NAMES, weight, len(prompt_ids)), prompt_ids


def _step(tokenizer, guidance, prompt_ids, answer: str) -> torch.Tensor:
    """The bonus the guidance adds to every token after `answer` (flat scores of 0)."""
    ids = torch.tensor([prompt_ids + tokenizer(answer, add_special_tokens=False)["input_ids"]])
    return guidance(ids, torch.zeros(1, len(tokenizer)))[0]


def test_label_slots_are_after_favours_and_the_emotion_key_only():
    assert label_slot("Reasoning: The evidence favours") == ""
    assert label_slot("Reasoning: The evidence only partly favours fe") == " fe"
    assert label_slot("x.\n**Emotion**: sad") == " sad"
    assert label_slot("Reasoning: The evidence favours fear over") is None
    assert label_slot("Reasoning: Relative to baseline: alpha power is") is None


def test_a_whole_label_gets_the_heads_weighted_log_probability_relative_to_its_top():
    tokenizer = build_offline_tokenizer()
    head = [0.6, 0.3, 0.1]
    for name, p in zip(NAMES, head):
        guidance, prompt_ids = _processor(tokenizer, head, weight=2.0)
        written, total = "Reasoning: The evidence favours", 0.0
        for token in tokenizer(" " + name, add_special_tokens=False)["input_ids"]:
            total += float(_step(tokenizer, guidance, prompt_ids, written)[token])
            written += tokenizer.decode([token])
        assert total == pytest.approx(2.0 * (math.log(p) - math.log(0.6)), abs=1e-5), name


def test_tokens_outside_labels_and_steps_outside_label_slots_are_left_alone():
    tokenizer = build_offline_tokenizer()
    guidance, prompt_ids = _processor(tokenizer, [0.1, 0.1, 0.8], weight=5.0)
    bonus = _step(tokenizer, guidance, prompt_ids, "Reasoning: The evidence favours")
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert bonus[newline] == 0 and (bonus <= 0).all() and (bonus < 0).any()
    fear = tokenizer(" fear", add_special_tokens=False)["input_ids"][0]
    assert int(bonus.argmax()) == fear or bonus[fear] == 0  # the head's label is never pushed down
    for elsewhere in ("Reasoning: The evidence favours fear over", "Reasoning: Relative to baseline:",
                      "Reasoning: The evidence favours fear"):
        assert torch.equal(_step(tokenizer, guidance, prompt_ids, elsewhere), torch.zeros(len(tokenizer)))
    off, prompt_ids = _processor(tokenizer, [0.1, 0.1, 0.8], weight=0.0)
    assert torch.equal(_step(tokenizer, off, prompt_ids, "Emotion:"), torch.zeros(len(tokenizer)))


def test_when_the_head_decides_only_its_label_can_be_written_at_a_label_slot():
    tokenizer = build_offline_tokenizer()
    head = [0.35, 0.33, 0.32]  # nearly flat (a high temperature): a finite weight would barely push
    prompt_ids = tokenizer("", add_special_tokens=False)["input_ids"]
    decides = HeadGuidedLabelsLogitsProcessor(tokenizer, torch.tensor([head]), NAMES, 0.0, len(prompt_ids),
                                              decides=True)
    for written in ("Reasoning: The evidence favours", "x.\nEmotion:"):
        bonus = _step(tokenizer, decides, prompt_ids, written)
        firsts = {name: tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in NAMES}
        assert bonus[firsts[NAMES[0]]] == 0
        assert all(bonus[firsts[name]] == float("-inf") for name in NAMES[1:] if firsts[name] != firsts[NAMES[0]])
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
        assert bonus[newline] == float("-inf")  # a word that is no label would leave the answer unparseable
    texts = token_texts(tokenizer)
    # the head's label written out: after "favours" the sentence goes on with " over"; at the Emotion key the line
    # (or the answer) ends
    bonus = _step(tokenizer, decides, prompt_ids, "Reasoning: The evidence favours " + NAMES[0])
    over = tokenizer(" over", add_special_tokens=False)["input_ids"][0]
    assert bonus[over] == 0 and bonus[newline] == float("-inf")  # "favours Disgust\n Relative to ..."
    assert all(bonus[i] == float("-inf") for i, t in enumerate(texts) if t[:1].isalpha())  # "feart"
    assert all(texts[i].startswith(" over") and not texts[i][5:6].isalpha()  # " over", never " o" then "nly"
               for i in torch.isfinite(bonus).nonzero().flatten().tolist())
    bonus = _step(tokenizer, decides, prompt_ids, "x.\nEmotion: " + NAMES[0].capitalize())
    allowed = torch.isfinite(bonus).nonzero().flatten().tolist()
    assert newline in allowed and tokenizer.eos_token_id in allowed and over not in allowed
    assert all(i in tokenizer.all_special_ids or texts[i].lstrip(" \t").startswith("\n") for i in allowed)
    bonus = _step(tokenizer, decides, prompt_ids, "Reasoning: Relative to baseline:")  # only: it may not end here,
    assert set((bonus == float("-inf")).nonzero().flatten().tolist()) == set(tokenizer.all_special_ids)
    ending = math.log(len(set(tokenizer.all_special_ids)))  # the ending's probability goes to a line break
    assert bonus[newline] == pytest.approx(math.log1p(math.exp(ending)))
    assert (bonus[torch.isfinite(bonus)] == 0).sum() == len(tokenizer) - len(set(tokenizer.all_special_ids)) - 1


def test_when_the_head_decides_the_answer_holds_to_its_format_until_the_emotion_line():
    tokenizer = build_offline_tokenizer()
    texts = token_texts(tokenizer)
    special = set(tokenizer.all_special_ids)

    def allowed(guidance, written):
        bonus = _step(tokenizer, guidance, [], written)
        return set(torch.isfinite(bonus).nonzero().flatten().tolist())

    decides = HeadGuidedLabelsLogitsProcessor(tokenizer, torch.tensor([[0.5, 0.3, 0.2]]), NAMES, 0.0, 0, decides=True)
    everything = set(range(len(tokenizer)))
    assert allowed(decides, "Reasoning: The evidence favours fear over sadness.") == everything - special
    for line in ("", "Emo", "Emotion"):  # a line after the rationale spells the Emotion key
        kept = allowed(decides, "Reasoning: a.\n" + line)
        assert kept and not kept & special
        for i in kept:  # its letters go on spelling the key; around it only what the parser allows
            letters = "".join(c for c in (line + texts[i]).lower() if c.isalpha())
            assert "emotion".startswith(letters) or letters == "emotion", repr(line + texts[i])
            assert not set(line + texts[i]) - set("EMOTIONemotion*:= \t\r\n"), repr(line + texts[i])
    for spelled in ("**Emotion**:", "emotion:", " Emotion :", "\nEmotion:"):  # what the hold allows, the parser reads
        answer = "Reasoning: a.\n" + spelled + " " + NAMES[1]
        assert parse_answer(answer, NAMES).label == NAMES[1]
        assert all(len(allowed(decides, answer[: len("Reasoning: a.\n") + k])) for k in range(len(spelled)))
    valence = tokenizer("Valence", add_special_tokens=False)["input_ids"][0]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert valence not in allowed(decides, "Reasoning: a.\n") and newline not in allowed(decides, "Reasoning: a.\nEmo")
    assert newline in allowed(decides, "Reasoning: a.\n") and newline not in allowed(decides, "Reasoning: a.\n\n")
    assert allowed(decides, "Reasoning: a.\nEmotion: fear\n") == everything  # written: nothing held
    asked = HeadGuidedLabelsLogitsProcessor(tokenizer, torch.tensor([[0.5, 0.3, 0.2]]), NAMES, 0.0, 0, decides=True,
                                            field_keys=["Valence"])
    assert valence in allowed(asked, "Reasoning: a.\n")  # a field the caller asks for may come first
    assert allowed(asked, "Reasoning: a.\nValence: low") == everything - special  # but the answer goes on
    guided, _ = _processor(tokenizer, [0.5, 0.3, 0.2], weight=2.0)  # the language model decides: its format is its own
    assert allowed(guided, "Reasoning: a.\n") == everything
    fresh = HeadGuidedLabelsLogitsProcessor(tokenizer, torch.tensor([[0.5, 0.3, 0.2]]), NAMES, 0.0, 0, decides=True)
    rationale = torch.tensor([tokenizer("Reasoning: a.", add_special_tokens=False)["input_ids"]])
    goes_on = torch.zeros(1, len(tokenizer))
    goes_on[0, newline] = 10.0
    fresh(rationale, goes_on)
    assert not fresh.line_held[0]  # its own choice was allowed
    goes_on[0, tokenizer.eos_token_id] = 20.0
    fresh(rationale, goes_on)
    assert fresh.line_held[0]  # the model would have ended before its Emotion line


class _Prefer(LogitsProcessor):
    """Adds a large score to the next token of `ids` at each step (later processors may still forbid it)."""

    def __init__(self, ids):
        self.ids, self.start = list(ids), None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        step = input_ids.shape[1] - self.start
        scores = scores.clone()
        if step < len(self.ids):
            scores[:, self.ids[step]] += 1000.0
        return scores


def test_a_head_decided_answer_that_would_skip_its_emotion_line_gets_one_with_the_heads_label():
    model, processor = _model()
    model.config.label_decision = "emotion_head"
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = eeg_like(len(CHANNELS), 4 * 200, seed=1)
    skipping = processor.tokenizer("Reasoning: a.\nValence: low", add_special_tokens=False)["input_ids"]
    skipping.append(processor.tokenizer.eos_token_id)

    def answer(**kwargs):
        generate = {"logits_processor": LogitsProcessorList([_Prefer(skipping)]), "max_new_tokens": len(skipping) + 16}
        return pipe(eeg, sampling_rate=200, channel_names=list(CHANNELS), units="uV", generate_kwargs=generate,
                    **kwargs)

    own = answer(guide_labels=False)
    assert own["label"] is None and "Valence: low" in own["generated_text"]  # the model's own answer: unparseable
    held = answer()
    top = max(held["head_scores"], key=held["head_scores"].get)
    assert held["label"] == top and "Valence" not in held["generated_text"]
    assert held["label_guidance"]["line_held"] and held["generated_text"].startswith("Reasoning: a.\n")
    asked = answer(extra_fields={"Valence": ["low", "high"]})  # a field asked for may come first; the label follows
    assert asked["fields"]["Valence"] == "low" and asked["label"] == top


def test_a_labels_tokens_never_run_on_into_another_word_nor_change_case_inside_it():
    tokenizer = build_offline_tokenizer()
    guidance, _ = _processor(tokenizer, [0.4, 0.3, 0.3])
    texts = token_texts(tokenizer)
    for name in NAMES:
        label = " " + name
        for cut in range(len(label)):
            written = label[:cut]
            for i in guidance.label_tokens(written)[NAMES.index(name)].tolist():
                after = written + texts[i]
                assert label.startswith(after.lower()) or (
                    after.lower().startswith(label) and not after[len(label)].isalpha()), (written, texts[i])
                letters = after.lstrip()
                assert letters[1:] == letters[1:].lower(), (written, texts[i])  # "Sadness", never "sadNEss"
        overshoot = [i for i, t in enumerate(texts) if t.startswith(label[-2:] + "s")]  # e.g. "ss" after "sadne"
        assert not set(overshoot) & set(guidance.label_tokens(label[:-2])[NAMES.index(name)].tolist())


def test_a_head_decision_without_a_head_or_of_an_unknown_source_is_refused():
    with pytest.raises(StrictDataclassClassValidationError, match="emotion_token is false.: use label_decision="):
        E2LLMConfig(label_decision="emotion_head")
    with pytest.raises(StrictDataclassClassValidationError, match="label_decision must be one of"):
        E2LLMConfig(label_decision="head")
    model, processor = build_tiny_e2llm()  # no emotion head: a config changed after loading is refused at the call
    model.config.label_decision = "emotion_head"
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    with pytest.raises(ValueError, match="emotion_token is false.: use label_decision='language_model'"):
        pipe(eeg_like(len(CHANNELS), 800), sampling_rate=200, channel_names=list(CHANNELS), units="uV")


def test_a_bad_weight_is_refused_with_the_fix():
    with pytest.raises(StrictDataclassClassValidationError, match="label_guidance_weight must be a finite number >= 0"):
        E2LLMConfig(label_guidance_weight=-1.0)
    with pytest.raises(StrictDataclassClassValidationError, match="emotion_token is false.: set label_guidance_weight=0"):
        E2LLMConfig(label_guidance_weight=1.0)


class _WriteFirst(LogitsProcessor):
    """Makes every row write `ids` first, then one of the tokens `then` as the model scores them (later processors
    may change those scores)."""

    def __init__(self, ids, then):
        self.ids, self.then, self.start = list(ids), list(then), None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        step = input_ids.shape[1] - self.start
        kept = torch.full_like(scores, -float("inf"))
        if step < len(self.ids):
            kept[:, self.ids[step]] = 0.0
        else:
            kept[:, self.then] = scores[:, self.then]
        return kept


def test_the_pipeline_writes_the_heads_label_at_a_large_weight_and_says_so():
    model, processor = _model()
    pipe = pipeline("eeg-emotion", model=model, processor=processor)
    eeg = eeg_like(len(CHANNELS), 4 * 200, seed=1)  # EEG-like: white noise is abstained on, and returns no counts
    prefix = processor.tokenizer("Emotion:", add_special_tokens=False)["input_ids"]
    firsts = [processor.tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in NAMES]

    def answer(**kwargs):  # the model's own choice among the labels' first tokens, after "Emotion:"
        generate = {"logits_processor": LogitsProcessorList([_WriteFirst(prefix, firsts)]),
                    "max_new_tokens": len(prefix) + 1}
        return pipe(eeg, sampling_rate=200, channel_names=list(CHANNELS), units="uV", generate_kwargs=generate,
                    **kwargs)

    own = answer()
    assert own["abstention_reason"] is None and own["label_guidance"] is None  # weight 0: the language model alone
    model.config.label_guidance_weight = 1000.0
    guided = answer()
    top = max(guided["head_scores"], key=guided["head_scores"].get)
    written = guided["generated_text"].split("Emotion:", 1)[1].lower()
    assert (" " + top).startswith(written) and written.strip()
    assert guided["label_guidance"]["weight"] == 1000.0
    own_written = own["generated_text"].split("Emotion:", 1)[1].lower()
    assert own_written != written and guided["label_guidance"]["changed"]  # the model's own first choice differs
    assert answer(guide_labels=False)["generated_text"] == own["generated_text"]
    model.config.label_guidance_weight, model.config.label_decision = 0.0, "emotion_head"
    decided = answer()
    assert decided["generated_text"] == guided["generated_text"]  # the head's label, however flat its probabilities
    assert decided["label_guidance"] == {"weight": 0.0, "head_decides": True, "changed": True, "line_held": False}
    model.config.label_decision = "language_model"
    with pytest.raises(TypeError, match="guide_labels must be True or False"):
        answer(guide_labels="no")


def test_stage3_chooses_the_guidance_weight_on_validation_windows(tmp_path):
    model, processor = _model()
    dataset = synthetic_window_dataset(n_subjects=2, clips_per_class=3, trial_seconds=8.0, channel_names=CHANNELS,
                                       label_names=NAMES)
    split = resolve_split(dataset, SplitSpec("trial", validation_size=0.4))
    record = calibrate_label_sources(model, processor, dataset.select(split.validation), dataset.select(split.train),
                                     batch_size=8, max_new_tokens=2, guidance_weights=[1.0, 1000.0])
    guidance = record["label_guidance"]
    assert set(guidance["weights"]) == {"0", "1", "1000"}
    best = max(guidance["weights"].values(), key=lambda f: f["balanced_accuracy"])["balanced_accuracy"]
    chosen = guidance["weights"][f"{guidance['weight']:g}"]
    assert chosen["balanced_accuracy"] == best and model.config.label_guidance_weight == guidance["weight"]
    assert guidance["weights"]["0"]["guided_changed"] == 0
    head = guidance["head_decides"]  # the head decides unless the language model is better beyond noise
    assert head is not None and set(head) == {"balanced_accuracy", "accuracy", "unparseable", "guided_changed"}
    assert guidance["decided_by"] == model.config.label_decision
    decision = guidance["decision"]
    assert decision["difference"] == pytest.approx(best - head["balanced_accuracy"])
    assert decision["ci_low"] <= decision["difference"] <= decision["ci_high"]
    assert decision["level"] == pytest.approx(1 - 0.05 / 3)  # the best of 3 weights (0, 1, 1000)
    assert (model.config.label_decision == "language_model") == (decision["ci_low"] > 0)
    model.save_pretrained(tmp_path / "model")
    loaded = E2LLMForConditionalGeneration.from_pretrained(tmp_path / "model").config
    assert loaded.label_guidance_weight == guidance["weight"] and loaded.label_calibration == record
    assert loaded.label_decision == guidance["decided_by"]
    calibrate_label_sources(model, processor, dataset.select(split.validation), dataset.select(split.train),
                            batch_size=8, max_new_tokens=2, guidance_weights=[1.0], head_may_decide=False)
    assert model.config.label_calibration["label_guidance"]["head_decides"] is None
    assert model.config.label_calibration["label_guidance"]["decision"] is None
    assert model.config.label_decision == "language_model"


def test_balanced_correct_averages_to_balanced_accuracy_and_compares_deciders_over_trials():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = ["a", "a", "b", None, "b", "a", "c", "c"]
    weighted = balanced_correct(predicted, labels, ["a", "b", "c"])
    assert weighted.mean() == pytest.approx((2 / 4 + 1 / 2 + 2 / 2) / 3)  # the recalls' mean; None counts as wrong
    trials = np.array([[0, t] for t in (0, 0, 1, 1, 2, 2, 3, 3)])
    lm = [{"label": p} for p in predicted]
    head = [{"label": "abc"[t]} for t in labels]  # always right
    comparison = compare_label_deciders(lm, head, labels, ["a", "b", "c"], trials)
    assert comparison["difference"] == pytest.approx(weighted.mean() - 1.0)
    assert comparison["ci_low"] < 0 and comparison["ci_high"] <= 0 and comparison["n_trials"] == 4
    same = compare_label_deciders(head, head, labels, ["a", "b", "c"], trials)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0  # a tie is not "better beyond noise"
    assert comparison["level"] == 0.95
    corrected = compare_label_deciders(lm, head, labels, ["a", "b", "c"], trials, n_tried=6)  # the best of 6 weights
    assert corrected["level"] == pytest.approx(1 - 0.05 / 6) and corrected["difference"] == comparison["difference"]
    assert corrected["ci_low"] <= comparison["ci_low"] and corrected["ci_high"] >= comparison["ci_high"]
    assert "trials of one subject (the noise between subjects unknown)" in comparison["test"]
    two = np.array([[t % 2, t] for t in (0, 0, 1, 1, 2, 2, 3, 3)])  # validation subjects held out: resampled too
    by_subject = compare_label_deciders(lm, head, labels, ["a", "b", "c"], two, by_subject=True)
    assert by_subject["resampled"] == "subjects, then their trials" and by_subject["n_subjects"] == 2
    assert "subjects (2) and their trials" in by_subject["test"]


@pytest.mark.parametrize("validation_kind, by_subject", [("subject", True), ("trial", False)])
def test_stage3_resamples_validation_subjects_where_they_are_held_out(monkeypatch, tmp_path, validation_kind,
                                                                       by_subject):
    from types import SimpleNamespace

    from e2llm.training import stage3

    seen = {}

    def calibrate(*args, **kwargs):
        seen.update(kwargs)
        return {"chosen": "emotion_head", "n_windows": 4, "sources": {}, "label_guidance": None}

    monkeypatch.setattr(stage3, "calibrate_label_sources", calibrate)
    model, _ = build_tiny_e2llm()
    script_args = SimpleNamespace(calibrate_labels=True, label_guidance_weights=[0.0, 1.0],
                                  label_head_may_decide=True)
    training_args = SimpleNamespace(per_device_eval_batch_size=2, seed=0)
    data = SimpleNamespace(validation=object(), train=object(), split=SimpleNamespace(validation_kind=validation_kind))
    stage3.calibrate_saved_model(script_args, training_args, {"model": model, "merged": tmp_path}, None, data)
    assert seen["by_subject"] is by_subject
