"""Metrics: unparseable answers counted as wrong and reported, calibration, self-consistency, mean ± std."""

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from e2llm.training.evaluation.metrics import (
    aggregate_runs,
    classification_metrics,
    consistency_rate,
    expected_calibration_error,
    field_accuracy,
    format_mean_std,
    mean_std,
    self_consistency,
)

NAMES = ["happiness", "sadness", "fear"]


def test_unparseable_counted_wrong_and_reported():
    true = ["happiness", "sadness", "fear", "happiness"]
    pred = ["happiness", None, "sadness", "happiness"]
    m = classification_metrics(true, pred, NAMES)
    assert m["accuracy"] == 0.5
    assert m["parse_rate"] == 0.75 and m["n_unparseable"] == 1
    assert m["balanced_accuracy"] == pytest.approx((1 + 0 + 0) / 3)
    assert m["confusion_matrix"]["columns"][-1] == "unparseable"
    assert m["confusion_matrix"]["matrix"] == [[2, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    # the unparseable answer is a miss for 'sadness', not a prediction of any class
    assert m["per_class"]["sadness"]["recall"] == 0.0
    expected_f1 = f1_score([0, 1, 2, 0], [0, -1, 1, 0], labels=[0, 1, 2], average="macro", zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected_f1)
    assert m["kappa"] == pytest.approx(cohen_kappa_score([0, 1, 2, 0], [0, -1, 1, 0]))


def test_all_garbage_scores_zero_and_indices_accepted():
    m = classification_metrics([0, 1, 2], [None, None, None], NAMES)
    assert (m["accuracy"], m["balanced_accuracy"], m["macro_f1"], m["parse_rate"]) == (0.0, 0.0, 0.0, 0.0)
    perfect = classification_metrics([0, 1, 2], [0, 1, 2], NAMES)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["macro_f1"] == perfect["kappa"] == 1.0


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [([0, 1], [0], "2 entries"), ([None], [0], "None"), (["joy"], [0], "not one of"), ([5], [0], "outside"),
     ([], [], "empty")],
)
def test_bad_metric_inputs(true, pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(true, pred, NAMES)


def test_expected_calibration_error():
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    # bin (0.8, 0.9]: correct, |1 - 0.9| = 0.1; bin (0.6, 0.7]: wrong, |0 - 0.7| = 0.7; each half the rows
    assert expected_calibration_error(probs, [0, 0]) == pytest.approx(0.4)
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error(np.ones((2, 3)), [0, 1])


def test_self_consistency_and_fields():
    result = self_consistency([["fear", "fear", None], ["fear", "fear", "fear"], [None, None, None]])
    assert result["agreement"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["unanimous_rate"] == pytest.approx(1 / 3) and result["n_samples"] == 3
    with pytest.raises(ValueError, match="same number"):
        self_consistency([["fear"], ["fear", "fear"]])
    truth = [{"Valence": "negative", "Arousal": "low"}, {"Valence": "positive", "Arousal": "high"}]
    pred = [{"Valence": "negative", "Arousal": None}, {"Valence": "negative", "Arousal": "high"}]
    assert field_accuracy(truth, pred, ["Valence", "Arousal"]) == {"Valence": 0.5, "Arousal": 0.5}
    assert consistency_rate(pred, lambda a: a["Valence"] == "negative") == 0.5


def test_mean_std_over_seeds():
    assert mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": math.sqrt(0.02), "n": 2})
    assert mean_std([0.5])["std"] == 0.0
    assert mean_std([float("nan")])["n"] == 0
    summary = aggregate_runs([{"accuracy": 0.5, "name": "x"}, {"accuracy": 0.7, "name": "y"}])
    assert list(summary) == ["accuracy"]
    assert format_mean_std(summary["accuracy"]) == "0.600 ± 0.141"


def test_a_text_leaf_is_counted_once_per_run_across_folds_and_seeds():
    from e2llm.training.evaluation.summary import _explanations

    sources = {(0, 0): "emotion_head", (0, 1): "language_model", (1, 0): "language_model", (1, 1): "language_model"}
    runs = [{"seed": seed, "explanations": {"label_probabilities": {"source": source, "n_windows": 90}}}
            for (seed, _fold), source in sources.items()]
    summary = _explanations(runs)["label_probabilities"]
    assert summary["source"] == "emotion_head (1 of 4); language_model (3 of 4)"
    assert summary["n_windows"]["mean"] == 90 and summary["n_windows"]["std"] == 0


def test_the_calibration_section_gives_the_validation_windows_as_a_count():
    from e2llm.training.evaluation.report_explanations import calibration_lines

    checks = {"calibration": {"head": {"ece": 0.1}},
              "label_probabilities": {"source": "language_model", "shipped_calibration": {
                  "n_windows": {"mean": 90.0, "std": 0.0, "n": 3},
                  "sources": {"language_model": {"ece": {"mean": 0.07, "std": 0.01, "n": 3}}}}}}
    assert "chosen on 90 validation windows" in "\n".join(calibration_lines(checks))
    checks["label_probabilities"]["shipped_calibration"]["n_windows"] = 45
    assert "chosen on 45 validation windows" in "\n".join(calibration_lines(checks))


def test_the_report_says_who_writes_the_label_and_how_often_the_head_changed_it():
    from e2llm.training.evaluation.explanations import label_guidance_report
    from e2llm.training.evaluation.report_explanations import calibration_lines
    from e2llm.training.evaluation.summary import _explanations
    from e2llm.training.quickstart_report import _calibration_lines

    class Config:
        label_guidance_weight = 4.0

    outputs = [{"label_guidance": {"weight": 4.0, "changed": changed}} for changed in (True, False, False, False)]
    assert label_guidance_report(outputs, Config()) == {"weight": 4.0, "head_decides": 0.0, "guided": 1.0,
                                                        "changed": 0.25}
    assert label_guidance_report([{"label_guidance": None}], Config())["guided"] == 0.0
    shipped = {"n_windows": 90, "sources": {"language_model": {"ece": 0.07}},
               "label_guidance": {"weight": 4.0, "weights": {"0": {"balanced_accuracy": 0.72},
                                                             "16": {"balanced_accuracy": 0.75},
                                                             "4": {"balanced_accuracy": 0.77}}}}
    runs = [{"seed": seed, "explanations": {
        "calibration": {"answer": {"ece": 0.05}}, "label_guidance": label_guidance_report(outputs, Config()),
        "label_probabilities": {"source": "language_model", "shipped_calibration": shipped}}} for seed in (0, 1)]
    checks = _explanations(runs)
    text = "\n".join(calibration_lines(checks))
    assert "(weight 4, chosen on validation windows; validation balanced accuracy by weight: 0 0.720" in text
    assert ", 4 0.770 ± 0.000, 16 0.750" in text and "label in 0.250 ± 0.000 of the answers" in text
    quick = "\n".join(_calibration_lines(checks))
    assert "guidance, weight 4 (chosen on validation windows, balanced accuracy by weight: 0 0.720, 4 0.770, 16 " \
           "0.750); it changed the language model's own label in 0.250 of the answers" in quick
    checks["label_guidance"]["weight"] = {"mean": 6.0, "std": 2.83, "n": 2}
    assert "guidance, weight 6.0 ± 2.8 over runs (chosen" in "\n".join(_calibration_lines(checks))
    checks["label_guidance"]["weight"] = {"mean": 0.0, "std": 0.0, "n": 2}
    assert "language model's alone" in "\n".join(calibration_lines(checks))
    assert "guidance" not in "\n".join(_calibration_lines(checks))


def test_the_reports_say_when_the_emotion_head_decides_the_label():
    from e2llm.training.evaluation.explanations import label_guidance_report
    from e2llm.training.evaluation.report_explanations import calibration_lines
    from e2llm.training.evaluation.summary import _explanations
    from e2llm.training.quickstart_report import _calibration_lines

    class Guided:
        label_guidance_weight, label_decision = 4.0, "language_model"

    class Decides:
        label_guidance_weight, label_decision = 4.0, "emotion_head"

    outputs = [{"label_guidance": {"weight": 4.0, "head_decides": True, "changed": c, "line_held": c}}
               for c in (True, False)]
    assert label_guidance_report(outputs, Decides())["head_decides"] == 1.0
    assert label_guidance_report(outputs, Decides())["line_held"] == 0.5  # held to the format before its Emotion line
    assert "line_held" not in label_guidance_report(outputs, Guided())
    shipped = {"n_windows": 90, "sources": {"language_model": {"ece": 0.07}},
               "label_guidance": {"weight": 4.0, "weights": {"0": {"balanced_accuracy": 0.30},
                                                             "4": {"balanced_accuracy": 0.33}},
                                  "head_decides": {"balanced_accuracy": 0.36}, "decided_by": "emotion_head",
                                  "decision": {"difference": -0.03, "ci_low": -0.08, "ci_high": 0.01}}}

    def runs(configs):
        return [{"seed": seed, "explanations": {
            "calibration": {"answer": {"ece": 0.05}}, "label_guidance": label_guidance_report(outputs, config),
            "label_probabilities": {"source": "emotion_head", "shipped_calibration": shipped}}}
            for seed, config in enumerate(configs)]

    checks = _explanations(runs([Decides(), Decides()]))
    text = " ".join("\n".join(calibration_lines(checks)).split())
    assert "The emotion head decides the answered labels (`config.label_decision` \"emotion_head\"" in text
    assert "the head deciding 0.360 ± 0.000; best weight - head deciding: -0.030 ± 0.000 over runs" in text
    assert "with the emotion head's log-probabilities added" not in text
    assert "in 0.500 ± 0.000 of the answers the language model would have ended the answer, or begun another line, " \
        "before its Emotion line, and was held to the format" in text
    quick = "\n".join(_calibration_lines(checks))
    assert "the emotion head decides the written labels (validation balanced accuracy 0.360; the guided language " \
        "model's was not better beyond the noise of the validation trials)" in quick
    assert "held to the answer's format before its Emotion line in 0.500 of them" in quick
    checks = _explanations(runs([Decides(), Guided()]))
    text = " ".join("\n".join(calibration_lines(checks)).split())
    assert "decides the answered labels in 0.50 of the runs" in text and "added at the label's tokens" in text
    quick = "\n".join(_calibration_lines(checks))
    assert "decides the written labels in 0.50 of the runs" in quick and "guidance, weight 4" in quick


def test_the_reports_give_the_comparison_that_chose_the_source_of_the_probabilities():
    from e2llm.training.evaluation.report_explanations import calibration_lines
    from e2llm.training.evaluation.summary import _explanations
    from e2llm.training.quickstart_report import _calibration_lines

    shipped = {"n_windows": 90, "sources": {"language_model": {"ece": 0.05}, "emotion_head": {"ece": 0.15}},
               "comparison": {"difference": -0.2, "ci_low": -0.31, "ci_high": -0.09, "p_value": 0.001, "n_trials": 18}}
    runs = [{"seed": seed, "explanations": {
        "calibration": {"answer": {"ece": 0.07}},
        "label_probabilities": {"source": "emotion_head", "shipped_calibration": shipped}}} for seed in (0, 1)]
    one = _explanations(runs[:1])  # one run: its own test, interval and all
    text = " ".join("\n".join(calibration_lines(one)).split())
    assert ("the emotion head unless the language model's log-likelihood of the true labels is higher beyond noise "
            "(its 95% interval above 0) (language model - head: -0.200 per window, 95% interval over validation "
            "trials [-0.310, -0.090])") in text
    quick = "\n".join(_calibration_lines(one))
    assert ("label probabilities from the emotion head (chosen on validation windows: language model ECE 0.050, "
            "emotion head ECE 0.150; log-likelihood per window, language model - head -0.200 [-0.310, -0.090]: the "
            "head unless the interval is above 0)") in quick
    shipped["comparison"]["resampled"] = "subjects, then their trials"
    assert "95% interval over validation subjects and their trials" in "\n".join(calibration_lines(_explanations(runs[:1])))
    # two runs: each chose its source by its own interval; their bounds are not averaged into an interval
    checks = _explanations(runs)
    assert checks["label_probabilities"]["shipped_calibration"]["comparison"].keys() >= {"difference", "n_runs"}
    assert "ci_low" not in checks["label_probabilities"]["shipped_calibration"]["comparison"]
    text = " ".join("\n".join(calibration_lines(checks)).split())
    assert ("(language model - head: -0.200 ± 0.000 per window over 2 runs; each run's source was chosen by its own "
            "interval)") in text and "-0.310" not in text
    quick = "\n".join(_calibration_lines(checks))
    assert ("log-likelihood per window, language model - head -0.200 over 2 runs: in each, the head unless its "
            "interval is above 0") in quick and "-0.310" not in quick
    del shipped["comparison"]  # a model without an emotion head: one source, no comparison
    assert "language model - head" not in "\n".join(_calibration_lines(_explanations(runs)))


def test_one_runs_decision_says_what_its_interval_is_over():
    from e2llm.training.evaluation.report_explanations import _decision_text

    decision = {"difference": 0.048, "ci_low": 0.007, "ci_high": 0.090, "level": 1 - 0.05 / 6}
    assert _decision_text(decision) == ("; best weight - head deciding: 0.048, 99.2% interval over validation trials "
                                        "[0.007, 0.090]")
    held_out = {**decision, "resampled": "subjects, then their trials"}
    assert "99.2% interval over validation subjects and their trials [0.007, 0.090]" in _decision_text(held_out)


def test_explanations_summarise_runs_read_back_from_json():
    """A NaN in a run's checks is written to JSON as null; the runs read back summarise as the originals do."""
    import json

    from e2llm.training.evaluation.summary import _explanations

    runs = [{"seed": 0, "fold": fold, "explanations": {"calibration": {"answer": {"ece": ece, "nll": nll}}}}
            for fold, (ece, nll) in enumerate([(0.1, float("nan")), (0.3, 2.0)])]
    read_back = json.loads(json.dumps(runs).replace("NaN", "null"))
    assert read_back[0]["explanations"]["calibration"]["answer"]["nll"] is None
    assert _explanations(read_back) == _explanations(runs)
    assert _explanations(read_back)["calibration"]["answer"]["nll"]["mean"] == 2.0
