"""Calibration of label probabilities: temperature scaling (Guo et al., ICML 2017) fitted on validation windows.

`fit_temperature` finds the temperature ``T`` that minimises the negative log-likelihood of ``softmax(logits / T)``
on validation windows (training trials held out of training, never test windows); a model stores it and its label
scoring divides the labels' log-likelihoods by it. `calibration_summary` gives what the report shows for one
source of probabilities (the language model's label scores, the stage-1 head): accuracy, mean confidence, expected
calibration error, negative log-likelihood and Brier score.

    >>> import numpy as np
    >>> logits = np.log(np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]]))
    >>> labels = np.array([0, 0, 1, 1])  # 75% right at 99% confidence: too sure
    >>> fit_temperature(logits, labels) > 1
    True
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from transformers import pipeline

from e2llm.processing.dataset_io import dataset_metadata
from e2llm.training.evaluation.metrics import expected_calibration_error
from e2llm.training.evaluation.probes import softmax
from e2llm.training.evaluation.runner import Evaluator, _subject_baselines

TEMPERATURE_BOUNDS = (0.05, 100.0)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))))


def fit_temperature(logits, labels) -> float:
    """The temperature `(0.05 .. 100)` minimising the NLL of `softmax(logits / T)` (`logits` `(n, n_labels)`, e.g.
    label log-likelihoods or log-probabilities; `labels` `(n,)` true indices)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(int)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) < 2:
        raise ValueError(f"temperature scaling needs (n >= 2, n_labels) logits and n labels, got {logits.shape} and "
                         f"{labels.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite (clip log-probabilities of 0 first)")
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: _nll(logits, labels, float(np.exp(log_t))), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def logits_from_probs(probs) -> np.ndarray:
    """Log-probabilities (softmax-equivalent logits) of probability rows, clipped away from 0."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def calibration_summary(probs, labels) -> dict:
    """``accuracy``, ``mean_confidence``, ``ece``, ``nll`` and ``brier`` of probability rows `(n, n_labels)`."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(int)
    onehot = np.eye(probs.shape[1])[labels]
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)), "mean_confidence": float(probs.max(1).mean()),
            "ece": expected_calibration_error(probs, labels),
            "nll": float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)))),
            "brier": float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))}


def answer_logits(outputs, label_names) -> np.ndarray:
    """`(n, n_labels)` log-probabilities of the ``eeg-emotion`` pipeline's label scores (one output per window)."""
    return logits_from_probs([[o["scores"][name] for name in label_names] for o in outputs])


def validation_temperature(model, processor, validation, train, batch_size: int = 32, max_new_tokens: int = 160,
                           seed: int = 0) -> dict:
    """The label temperature fitted on `validation` windows (a prepared dataset carved from the training trials,
    never test windows) through the pipeline's answers (rationale, then label scores), with baselines from `train`.

    Returns ``{"label_temperature", "ece_before", "ece_after", "n_windows"}`` (the ECE on the validation windows
    themselves). Set ``model.config.label_temperature`` to the first before saving the model."""
    metadata = dataset_metadata(validation)
    names = list(model.config.label_names)
    was_training = model.training
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    evaluator = Evaluator(pipe, validation, metadata, names, batch_size, max_new_tokens,
                          _subject_baselines(train, validation, float(metadata["sampling_rate"])))
    outputs = evaluator.run(evaluator.prompts("emotion", "train", seed))
    model.train(was_training)
    logits = answer_logits(outputs, names)
    temperature = fit_temperature(logits, evaluator.labels)
    return {"label_temperature": temperature, "n_windows": len(outputs),
            "ece_before": expected_calibration_error(softmax(logits), evaluator.labels),
            "ece_after": expected_calibration_error(softmax(logits, temperature), evaluator.labels)}

__all__ = ["TEMPERATURE_BOUNDS", "answer_logits", "calibration_summary", "fit_temperature", "logits_from_probs",
           "validation_temperature"]
