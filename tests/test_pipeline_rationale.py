"""Numbers by construction: claims linked to measured items, rendered with the measured value, removed and counted
when nothing was measured; the agreement figure for reports."""

from __future__ import annotations

from e2llm.rationale_e2llm import check_label_support, claim_agreement, ground_rationale, numbers_not_measured

ITEMS = [
    {"id": "power:alpha:frontal", "kind": "power", "value": -5.53, "z": -2.1, "bucket": "strongly", "text": "-5.5 dB"},
    {"id": "de:theta", "kind": "de", "value": 0.04, "z": 0.5, "bucket": "slightly", "text": "+0.04 nats"},
    {"id": "faa:alpha", "kind": "faa", "value": 0.31, "z": None, "bucket": None, "text": "+0.31"},
]


def test_numbers_come_from_the_items_whatever_the_model_wrote():
    text = ("Relative to this subject's baseline: alpha power is lower over frontal channels (strongly, -1.5 dB); "
            "theta differential entropy is lower across the scalp (moderately); frontal alpha asymmetry is shifted "
            "right (slightly, +9.00); gamma power is higher over temporal channels (strongly, +4.0 dB), 3 times.")
    out = ground_rationale(text, ITEMS, reference_kind="model_reference")
    assert out.text == ("Relative to the model's reference: alpha power is lower over frontal channels (strongly, "
                        "-5.5 dB); theta differential entropy is lower across the scalp (moderately, +0.04 nats); "
                        "frontal alpha asymmetry is shifted right (slightly, +0.31), times.")
    assert [(c["item"], c["direction_agrees"], c["bucket_agrees"]) for c in out.claims] == [
        ("power:alpha:frontal", True, True), ("de:theta", False, False), ("faa:alpha", True, None)]
    assert out.removed_claims == [{"text": "gamma power is higher over temporal channels (strongly, +4.0 dB)",
                                   "reason": "no measured item power:gamma:temporal for this window"}]
    assert out.removed_numbers == ["3"]
    window = {"rationale": out.text, "evidence": {"items": ITEMS}, "claims": out.claims,
              "removed_claims": out.removed_claims, "removed_numbers": out.removed_numbers}
    assert numbers_not_measured(window) == []
    assert numbers_not_measured({**window, "rationale": "alpha is -1.5 dB"}) == ["-1.5"]
    summary = claim_agreement([{"windows": [window]}])
    assert summary == {"claims": 4, "linked": 3, "removed": 1, "removed_numbers": 1, "removed_support": 0,
                       "direction_agrees": 2, "bucket_agrees": 1, "agree_share": 0.5,  # alpha (all agree), faa (no spread)
                       "constrained": 0, "overridden": 0, "own_agree_share": None}


def test_claim_agreement_counts_what_the_claim_constraint_changed():
    windows = [{"claims": [], "claim_constraint": {"claims": 3, "overridden": 2}},
               {"claims": [], "claim_constraint": {"claims": 1, "overridden": 0}}, {"claims": [], "claim_constraint": None}]
    summary = claim_agreement(windows)
    assert (summary["constrained"], summary["overridden"], summary["own_agree_share"]) == (4, 2, 0.5)


def test_a_window_without_measured_items_keeps_no_claim():
    out = ground_rationale("alpha power is lower over frontal channels (strongly, -1.5 dB).", [],
                           "no reference to measure this window against")
    assert out.claims == [] and out.removed_claims[0]["reason"] == "no reference to measure this window against"
    assert out.text == "." or "1.5" not in out.text
    assert ground_rationale(None, ITEMS).text is None


NAMES = ["anger", "disgust", "fear", "sadness"]
CLAIM = "Relative to the baseline recording: theta power is higher over occipital channels (slightly)"


def test_a_closing_sentence_not_about_the_label_is_removed_and_said_why():  # earlier models' grammar
    text, removed = check_label_support(f"{CLAIM}; so the evidence favours disgust over disgust.", "disgust", NAMES)
    assert text == f"{CLAIM}." and removed == {"text": "so the evidence favours disgust over disgust",
                                                "reason": "it sets the label disgust against itself"}
    text, removed = check_label_support(f"{CLAIM}; so the evidence only partly favours Fear over sadness.",
                                        "sadness", NAMES)
    assert text == f"{CLAIM}." and removed["reason"] == "it favours fear, not the answer sadness"
    text, removed = check_label_support("Relative to the baseline recording: so the evidence favours fear over fear.",
                                        "fear", NAMES)
    assert text == "Relative to the baseline recording: no claim the measured evidence supports."
    kept = f"{CLAIM}; so the evidence favours disgust over anger."
    assert check_label_support(kept, "disgust", NAMES) == (kept, None)
    assert check_label_support(CLAIM, "disgust", NAMES) == (CLAIM, None)  # no closing sentence
    assert check_label_support(kept, None, NAMES) == (kept, None)  # no label to hold it against
    assert check_label_support(None, "disgust", NAMES) == (None, None)
    windows = [{"claims": [], "removed_support": removed}, {"claims": [], "removed_support": None}]
    assert claim_agreement(windows)["removed_support"] == 1


def test_an_opening_sentence_not_about_the_label_is_removed_and_said_why():
    text, removed = check_label_support(f"The evidence favours fear over sadness. {CLAIM}.", "sadness", NAMES)
    assert text == f"{CLAIM}." and removed == {"text": "The evidence favours fear over sadness",
                                                "reason": "it favours fear, not the answer sadness"}
    kept = f"The evidence favours sadness over fear. {CLAIM}."
    assert check_label_support(kept, "sadness", NAMES) == (kept, None)
    items = [{"id": "power:theta:occipital", "value": 1.2, "bucket": "slightly", "text": "+1.2 dB"}]
    out = ground_rationale("The evidence favours sadness over fear. Relative to baseline: theta power is higher over "
                           "occipital channels (slightly).", items, reference_kind="baseline")
    assert out.text == ("The evidence favours sadness over fear. Relative to the baseline recording: theta power is "
                        "higher over occipital channels (slightly, +1.2 dB).")
