"""Evaluation of E2LLM models, one focused module per step (import the one you need; nothing is imported here):

* `splits` — split resolution (train / validation / test rows) for every stage, the quickstart and evaluation;
* `runner` — the model's answers on the test windows through the ``eeg-emotion`` pipeline, per task, and the
  mismatched-EEG pairing;
* `baselines` — DE + logistic regression and EEGNet-v4 on the same split;
* `metrics` — classification, calibration and reliability metrics;
* `statistics` — bootstrap intervals over held-out trials, paired comparisons, selective prediction;
* `evaluate` — `evaluate_model`: one model on one split, refusing trials its provenance trained on;
* `summary` — pooling runs (training seeds, folds) into mean ± std, intervals and comparisons;
* `report` — ``report.json``, ``report.md`` and confusion-matrix pictures.
"""
