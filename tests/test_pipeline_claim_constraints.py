"""Claims completed from measurement while the model writes them (`e2llm.claim_constraints_e2llm`)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from e2llm import SEED_CHANNELS, build_offline_tokenizer, build_tiny_e2llm
from e2llm.claim_constraints_e2llm import Favouring, MeasuredClaimsLogitsProcessor, claim_endings, completions
from e2llm.eeg_evidence_features import BAND_NAMES, band_power_db
from e2llm.label_evidence_e2llm import feature_ids

_spec = importlib.util.spec_from_file_location("pipeline_helpers", Path(__file__).parent / "fixtures" /
                                               "pipeline_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
pytestmark = pytest.mark.filterwarnings("ignore:only .* EEG channel:UserWarning")


def _item(item_id: str, value: float, bucket: str | None = "strongly") -> dict:
    kind, band, region = (item_id.split(":") + [None, None])[:3]
    return {"id": item_id, "kind": kind, "band": band, "region": region, "value": value, "bucket": bucket}


ITEMS = [_item("power:alpha:frontal", -5.5), _item("power:alpha:occipital", -1.2, "moderately"),
         _item("power:alpha:temporal", 0.4, "slightly"), _item("de:gamma", 0.3, "moderately"),
         _item("faa:alpha", -0.2, "slightly")]
OPEN = "Reasoning: Relative to baseline: "


def test_an_open_claim_ends_only_as_a_measured_item():
    assert completions(OPEN + "alpha power is", ITEMS) == [" lower over frontal channels (strongly)",
                                                           " lower over occipital channels (moderately)",
                                                           " higher over temporal channels (slightly)"]
    assert completions(OPEN + "alpha power is lower over o", ITEMS) == ["ccipital channels (moderately)"]
    assert completions(OPEN + "gamma differential entropy is", ITEMS) == [" higher across the scalp (moderately)"]
    assert completions(OPEN + "frontal alpha asymmetry is shifted", ITEMS) == [" left (slightly)"]


def test_where_a_claim_starts_only_an_item_not_cited_yet_opens():
    assert completions(OPEN.rstrip(), ITEMS) == [" alpha power is", " gamma differential entropy is",
                                                 " frontal alpha asymmetry is shifted"]
    assert completions(OPEN + "gam", ITEMS) == ["ma differential entropy is"]
    done = OPEN + "gamma differential entropy is higher across the scalp (moderately);"
    assert completions(done, ITEMS) == [" alpha power is", " frontal alpha asymmetry is shifted", " so the evidence"]
    assert completions(done + " so", ITEMS) == [" the evidence"]  # an earlier model's closing sentence


def test_outside_a_claim_the_model_writes_freely():
    assert completions("Reasoning: The evidence favours sadness over", ITEMS) is None
    assert completions(OPEN + "alpha power is lower over frontal channels (strongly).", ITEMS) is None
    assert not completions(OPEN + "alpha power is lower over frontal channels (strongly); so the evidence", ITEMS)
    assert completions(OPEN + "beta power is", ITEMS) == []  # nothing measured for beta: free, the grounding decides
    assert completions(OPEN + "alpha power is higher over frontal", ITEMS) == []  # off the measured items


def test_a_cited_item_is_not_cited_again():
    text = OPEN + "alpha power is lower over frontal channels (strongly); alpha power is"
    assert completions(text, ITEMS) == [" lower over occipital channels (moderately)",
                                        " higher over temporal channels (slightly)"]


def test_without_a_measured_strength_every_strength_is_allowed():
    endings = claim_endings("power", "alpha", [_item("power:alpha:frontal", -5.5, None)], set())
    assert endings == [" lower over frontal channels (slightly)", " lower over frontal channels (moderately)",
                       " lower over frontal channels (strongly)"]


def _step(processor, tokenizer, prompt: list[int], written: str, scores: torch.Tensor) -> torch.Tensor:
    ids = torch.tensor([prompt + tokenizer(written, add_special_tokens=False)["input_ids"]])
    return processor(ids, scores.clone())


def test_the_processor_masks_every_other_token_and_counts_what_it_changed():
    tokenizer = build_offline_tokenizer()
    prompt = tokenizer("<|im_start|>user\nWhich emotion?<|im_end|>\n", add_special_tokens=False)["input_ids"]
    processor = MeasuredClaimsLogitsProcessor(tokenizer, [ITEMS], len(prompt))
    higher = tokenizer(" higher", add_special_tokens=False)["input_ids"][0]
    scores = torch.zeros(1, len(tokenizer))
    scores[0, higher] = 10.0  # the model wants "higher": alpha is lower over frontal and occipital, higher temporally
    out = _step(processor, tokenizer, prompt, OPEN + "alpha power is", scores)
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    texts = [tokenizer.decode([i]) for i in allowed]
    assert higher in allowed and all(any(e.startswith(t) for e in completions(OPEN + "alpha power is", ITEMS))
                                     for t in texts)
    assert processor.claims == [1] and processor.overridden == [0]  # its choice was measured: not overridden

    processor = MeasuredClaimsLogitsProcessor(tokenizer, [ITEMS], len(prompt))
    scores = torch.zeros(1, len(tokenizer))
    scores[0, higher] = 10.0
    out = _step(processor, tokenizer, prompt, OPEN + "alpha power is higher over", scores)
    assert " temporal channels (slightly)".startswith(tokenizer.decode([int(out[0].argmax())]))  # the one higher
    assert processor.overridden == [1]  # it wanted " higher" again where only " temporal" fits
    processor = MeasuredClaimsLogitsProcessor(tokenizer, [ITEMS], len(prompt))
    out = _step(processor, tokenizer, prompt, OPEN + "frontal alpha asymmetry is shifted", scores)
    assert tokenizer.decode([int(out[0].argmax())]) in (" ", " l", " le", " left")
    assert processor.overridden == [1]  # it wanted " higher" where only " left" was measured
    finished = OPEN + "frontal alpha asymmetry is shifted left (slightly)"
    assert processor.finished(0, finished) == (1, 1) and processor.finished(0, OPEN + "frontal alpha") == (0, 0)


def test_outside_claims_and_without_items_nothing_is_masked():
    tokenizer = build_offline_tokenizer()
    processor = MeasuredClaimsLogitsProcessor(tokenizer, [ITEMS, None], 0)
    ids = tokenizer([OPEN + "so the", OPEN + "alpha power is"], add_special_tokens=False)["input_ids"]
    width = max(map(len, ids))
    batch = torch.tensor([row + [0] * (width - len(row)) for row in ids])  # right-padded: only text matters here
    scores = torch.randn(2, len(tokenizer))
    torch.testing.assert_close(processor(batch[:1], scores[:1].clone()), scores[:1])
    processor = MeasuredClaimsLogitsProcessor(tokenizer, [None], 0)
    torch.testing.assert_close(processor(torch.tensor([ids[1]]), scores[1:].clone()), scores[1:])


# ---------------------------------------------------------------- in the pipeline
NAMES = list(SEED_CHANNELS[:24])
SFREQ = 200.0


@pytest.fixture(scope="module")
def pipe():
    model, processor = build_tiny_e2llm()
    processor.set_evidence_statistics(helpers.statistics(NAMES, spread=2.0))
    return pipeline("eeg-emotion", model=model, processor=processor)


def _inputs():
    eeg = helpers.recording(NAMES, 4.0, SFREQ, seed=1)
    baseline = band_power_db(eeg[None], SFREQ)[0]
    baseline[list(BAND_NAMES).index("alpha")] += 10.0  # alpha 10 dB below the baseline everywhere: "lower"
    return eeg, baseline


def test_the_pipeline_returns_the_measured_direction_where_the_model_would_write_another(pipe):
    eeg, baseline = _inputs()
    answer = "Reasoning: alpha power is higher over frontal channels (slightly).\nEmotion: sadness"
    prefer = helpers.forced(pipe, answer, bonus=100.0, extra_tokens=12)["generate_kwargs"]
    out = pipe(eeg, sampling_rate=SFREQ, channel_names=NAMES, units="uV", baseline_power=baseline,
               generate_kwargs=prefer)
    assert out["generated_text"].startswith("Reasoning: alpha power is lower over ")
    assert out["claims"] and all(c["direction_agrees"] and c["bucket_agrees"] for c in out["claims"])
    assert out["claim_constraint"] == {"claims": 1, "overridden": 1}
    free = pipe(eeg, sampling_rate=SFREQ, channel_names=NAMES, units="uV", baseline_power=baseline,
                generate_kwargs=prefer, constrain_claims=False)
    assert free["generated_text"] == answer and free["claim_constraint"] is None
    assert [c["direction_agrees"] for c in free["claims"]] == [False]  # what the model wrote, flagged


def test_a_forced_answer_is_left_as_forced(pipe):
    eeg, baseline = _inputs()
    answer = "Reasoning: alpha power is higher over frontal channels (slightly).\nEmotion: sadness"
    out = pipe(eeg, sampling_rate=SFREQ, channel_names=NAMES, units="uV", baseline_power=baseline,
               **helpers.forced(pipe, answer))
    assert out["generated_text"] == answer and out["claim_constraint"] == {"claims": 0, "overridden": 0}
    assert out["claims"][0]["direction_agrees"] is False


def test_windows_without_a_known_reference_are_not_constrained(pipe):
    eeg, _ = _inputs()
    out = pipe(eeg, sampling_rate=SFREQ, channel_names=NAMES, units="uV", max_new_tokens=4)
    assert out["claim_constraint"] is None  # one window: its reference (the model's) is chosen after answering
    np.testing.assert_equal(out["evidence"]["reference"]["kind"], "model_reference")


def _signatures() -> dict:
    """Sadness: alpha low frontally and high occipitally; fear the reverse (spread units, within-class SD 1)."""
    ids = feature_ids()
    mean = np.zeros((2, len(ids)))
    mean[:, ids.index("power:alpha:frontal")] = [-2.0, 1.0]
    mean[:, ids.index("power:alpha:occipital")] = [1.0, -1.0]
    return {"labels": ["sadness", "fear"], "feature_ids": ids, "mean_z": mean.tolist(), "within_sd": [1.0] * len(ids)}


def test_after_the_label_only_evidence_for_it_ends_a_claim():
    items = [{**_item("power:alpha:frontal", -5.5), "z": -2.75}, {**_item("power:alpha:occipital", -1.2,
                                                                           "moderately"), "z": -0.6}]
    tokenizer = build_offline_tokenizer()
    processor = MeasuredClaimsLogitsProcessor(tokenizer, [items], 0, _signatures(), ["sadness", "fear"])
    assert processor.favouring(0, "sadness") == Favouring(frozenset({"power:alpha:frontal"}))
    assert processor.favouring(0, "fear") == Favouring(frozenset({"power:alpha:occipital"}))
    for_label = lambda label: processor.favouring(0, label)  # noqa: E731
    names = ["sadness", "fear"]
    opened = OPEN + "alpha power is"
    assert completions(opened, items, for_label, names) == [" lower over frontal channels (strongly)",
                                                           " lower over occipital channels (moderately)"]
    # the label's only evidence cited: the list ends there (an item more could point elsewhere)
    assert completions("The evidence favours sadness over fear. " + opened, items, for_label, names) == [
        " lower over frontal channels (strongly).\n"]
    assert completions("The evidence favours fear over sadness. " + opened, items, for_label, names) == [
        " lower over occipital channels (moderately).\n"]  # the answer's next line follows
    finished = "The evidence favours fear over sadness. " + opened + " lower over occipital channels (moderately)"
    assert completions(finished, items, for_label, names) == [".\n"]
    assert completions(finished + ".", items, for_label, names) == ["\n"]
    assert completions(finished + ".\n", items, for_label, names) is None
    # without a label, the model chooses: another claim or the list's end
    assert completions(opened + " lower over occipital channels (moderately)", items, for_label, names) == [";", "."]
    assert completions("The evidence favours fear over sadness. " + OPEN.rstrip(), items, for_label, names) == [
        " alpha power is"]
    # no item of this band favours the label: the measured endings stay (true, if not evidence for it)
    assert completions("The evidence favours fear over sadness. " + opened + " lower over occipital channels "
                       "(moderately); alpha power is", items, for_label, names) == [
        " lower over frontal channels (strongly)"]


def test_evidence_that_favours_the_label_only_together_is_cited_whole():
    """Sadness against three labels: alpha frontal is no evidence against D, alpha occipital none against B; only
    together do they favour sadness over every label (C, the most confusable, by little)."""
    ids = feature_ids()
    frontal, occipital = ids.index("power:alpha:frontal"), ids.index("power:alpha:occipital")
    mean = np.zeros((4, len(ids)))
    mean[:, frontal] = [-2.0, 2.0, -1.5, -2.0]
    mean[:, occipital] = [-2.0, -2.0, -1.5, 2.0]
    signatures = {"labels": ["sadness", "B", "C", "D"], "feature_ids": ids, "mean_z": mean.tolist(),
                  "within_sd": [1.0] * len(ids)}
    items = [{**_item("power:alpha:frontal", -5.5), "z": -2.0}, {**_item("power:alpha:occipital", -4.0), "z": -2.0}]
    processor = MeasuredClaimsLogitsProcessor(build_offline_tokenizer(), [items], 0, signatures, signatures["labels"])
    favouring = processor.favouring(0, "sadness")
    assert favouring == Favouring(frozenset({"power:alpha:frontal", "power:alpha:occipital"}), together=True)
    for_label = lambda label: processor.favouring(0, label)  # noqa: E731
    said = "The evidence favours sadness over C. " + OPEN + "alpha power is"
    # the first of the two cannot end the list; the second ends it
    assert sorted(completions(said, items, for_label, signatures["labels"])) == [
        " lower over frontal channels (strongly);", " lower over occipital channels (strongly);"]
    assert completions(said + " lower over frontal channels (strongly)", items, for_label,
                       signatures["labels"]) == [";"]
    assert completions(said + " lower over frontal channels (strongly); alpha power is", items, for_label,
                       signatures["labels"]) == [" lower over occipital channels (strongly).\n"]
    assert processor.favouring(0, "D") == Favouring(frozenset())  # nothing measured points to D: the model chooses


def test_claims_are_constrained_on_the_rationales_line_only():
    done = OPEN + "alpha power is lower over frontal channels (strongly).\n"
    assert completions(done + "Note: gamma differential entropy is", ITEMS) is None
    assert completions(done + "x (slightly);", ITEMS) is None  # no claim list starts again in the answer lines
    assert completions("\n" + OPEN + "gamma differential entropy is", ITEMS) == [" higher across the scalp (moderately)"]
