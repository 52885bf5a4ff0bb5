"""Is the cited evidence what the answer depends on? ERASER-style comprehensiveness and sufficiency for EEG.

For each window with a parsed label ``y`` and a rationale citing measured items (`rationales.cited_items`), with
``p(y | x)`` the probability the scorer gives ``y`` (the model's label scores right after the prompt, or the stage-1
head's):

* comprehensiveness = ``p(y | x) - p(y | x without the cited items)``: large when the answer depends on them;
* sufficiency = ``p(y | x) - p(y | x with only the cited items)``: small when they suffice for it;

each next to the same measure for as many *random* items of the window (not cited): explanations that name what the
answer depends on beat the random control on both. Items are removed by bringing their bands on their channels to
the subject's baseline power (`perturb.gains_to_reference`; ``method="reference"``), or by a band-stop
(``method="band_stop"``, which for baseline-relative features writes opposite evidence instead; see `perturb`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from e2llm.eeg_evidence_features import band_power_db
from e2llm.training.evaluation.perturb import (
    apply_band_gains,
    band_stop_gains,
    gains_to_reference,
    item_mask,
    random_items,
)
from e2llm.training.evaluation.probes import ModelProbe, softmax

METHODS = ("reference", "band_stop")


Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def lm_scorer(probe: ModelProbe, question: str | None = None, temperature: float = 1.0) -> Scorer:
    """`(windows (n, n_channels, n_times) µV, baselines (n, n_bands, n_channels) dB) -> label probabilities (n,
    n_labels)` of the model's label scoring, the evidence line (when the model has one) measured on the given windows
    against each window's subject baseline, as the pipeline writes it."""
    names = probe.signal["channel_names"]

    def score(windows: np.ndarray, baselines_db: np.ndarray) -> np.ndarray:
        lines = [None] * len(windows)
        if probe.writes_evidence:
            power = band_power_db(windows, probe.signal["sampling_rate"])
            lines = probe.processor.evidence_statements(power, names, baselines_db)
        prompts = [probe.prompt_ids(question, line) for line in lines]
        tokens = probe.eeg_tokens(probe.encode(windows))
        return softmax(probe.label_log_likelihoods(prompts, tokens), temperature)

    return score


def head_scorer(probe: ModelProbe) -> Scorer | None:
    """`(windows, baselines) -> (n, n_labels)` probabilities of the encoder's emotion head, which reads no baseline
    (None without an emotion token)."""
    if not probe.emotion_token:
        return None
    return lambda windows, baselines_db: probe.head_probs(probe.encode(windows))


def _perturbed(windows, sfreq, power, baselines, masks, method: str) -> np.ndarray:
    masks = np.stack(masks)
    if method == "reference":
        gains = gains_to_reference(power, baselines, masks)
    elif method == "band_stop":
        gains = band_stop_gains(masks, len(windows))
    else:
        raise ValueError(f"unknown removal method {method!r}; use one of {METHODS}")
    return apply_band_gains(windows, sfreq, gains)


def eraser_scores(score: Scorer, windows_uv, sfreq: float, channel_names: Sequence[str],
                  cited: Sequence[Sequence[str]], predicted: Sequence[int], baselines_db: np.ndarray,
                  present: Sequence[Sequence[str]], method: str = "reference", seed: int = 0) -> dict:
    """Comprehensiveness and sufficiency of the `cited` items (per window) for the `predicted` label indices (-1:
    unparseable), next to random items of the same number (drawn from each window's `present` items).

    Returns means over the windows that have both a label and a cited item: ``comprehensiveness``,
    ``random_comprehensiveness``, ``sufficiency``, ``random_sufficiency``, the shares of windows where the cited
    items beat the random ones (``comprehensiveness_beats_random``: removing them lowers ``p(y)`` more;
    ``sufficiency_beats_random``: keeping only them keeps more), ``base_probability`` and ``n_windows``."""
    windows = np.asarray(windows_uv, dtype=np.float32)
    rows = np.array([i for i in range(len(windows)) if predicted[i] >= 0 and len(cited[i]) > 0], dtype=int)
    if len(rows) == 0:
        return {"n_windows": 0}
    rng = np.random.default_rng(seed)
    x, y = windows[rows], np.asarray(predicted)[rows]
    power, baselines = band_power_db(x, sfreq), np.asarray(baselines_db)[rows]
    chosen = {"cited": [list(cited[i]) for i in rows],
              "random": [random_items(present[i], cited[i], rng) for i in rows]}
    base = score(x, baselines)[np.arange(len(rows)), y]
    out = {"base_probability": float(base.mean()), "n_windows": int(len(rows)), "method": method}
    drops = {}
    for which, items in chosen.items():
        masks = [item_mask(chosen_items, channel_names) for chosen_items in items]
        for test, use in (("comprehensiveness", masks), ("sufficiency", [~m for m in masks])):
            after = score(_perturbed(x, sfreq, power, baselines, use, method), baselines)[np.arange(len(rows)), y]
            drops[(which, test)] = base - after
    for test in ("comprehensiveness", "sufficiency"):
        out[test] = float(drops[("cited", test)].mean())
        out[f"random_{test}"] = float(drops[("random", test)].mean())
    out["comprehensiveness_beats_random"] = float(np.mean(drops[("cited", "comprehensiveness")]
                                                          > drops[("random", "comprehensiveness")]))
    out["sufficiency_beats_random"] = float(np.mean(drops[("cited", "sufficiency")]
                                                    < drops[("random", "sufficiency")]))
    return out


__all__ = ["METHODS", "Scorer", "eraser_scores", "head_scorer", "lm_scorer"]
