"""What drives the answer: conflict tests that swap one input at a time (an ablation of the model's inputs).

Each test window `i` is paired with a partner window `j` of another class (`mismatched_partners`). The model scores
the labels (``Emotion:`` right after the prompt, as ``return_rationale=False`` does) with:

* ``none``: window i's own inputs;
* ``eeg_tokens``: window j's EEG tokens (pooled and region tokens) with window i's emotion token and text;
* ``emotion_token``: window i's EEG tokens and text with window j's emotion token (stage 1's head reading);
* ``evidence_text``: window i's EEG with window j's measured-evidence line (models whose prompts carry one);
* ``all``: every input of window j (the old "mismatched EEG" check, which cannot tell which input the answer
  follows).

Per test: accuracy against window i's label, and how often the answer follows the partner (its true label, and the
model's own answer on the partner's unchanged inputs). A model that reads the EEG tokens moves with ``eeg_tokens``;
one that only repeats its stage-1 head moves with ``emotion_token`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from e2llm.training.evaluation.probes import ModelProbe, softmax

CONFLICTS = ("none", "eeg_tokens", "emotion_token", "evidence_text", "all")


def mismatched_partners(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each window, another window (row) of a different class, drawn at random; `(n,)` int64.

    Raises ValueError when the windows hold a single class (no mismatched partner exists).
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("mismatched-EEG scoring needs test windows of at least two classes")
    rng = np.random.default_rng(seed + 104729)
    partners = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        candidates = np.flatnonzero(labels != label)
        partners[i] = candidates[rng.integers(len(candidates))]
    return partners


def _swapped_inputs(tokens: torch.Tensor, prompts: list, partners: np.ndarray, emotion_token: bool,
                    has_evidence: bool) -> dict[str, tuple[torch.Tensor, list]]:
    """`{test: (EEG tokens, prompts)}` of each conflict test."""
    other = tokens[torch.as_tensor(partners)]
    swapped_prompts = [prompts[j] for j in partners]
    tests = {"none": (tokens, prompts), "all": (other, swapped_prompts)}
    if emotion_token:
        tests["eeg_tokens"] = (torch.cat([other[:, :-1], tokens[:, -1:]], 1), prompts)
        tests["emotion_token"] = (torch.cat([tokens[:, :-1], other[:, -1:]], 1), prompts)
    else:
        tests["eeg_tokens"] = (other, prompts)
    if has_evidence:
        tests["evidence_text"] = (tokens, swapped_prompts)
    return {name: tests[name] for name in CONFLICTS if name in tests}


def conflict_tests(probe: ModelProbe, windows_uv, labels, evidence_lines: Sequence[str] | None = None,
                   question: str | None = None, seed: int = 0, temperature: float = 1.0) -> dict:
    """Run the conflict tests on windows `(n, n_channels, n_times)` µV with true label indices `labels` `(n,)`;
    `evidence_lines` are the windows' measured-evidence lines (None for a model without them).

    Returns ``{test: {"accuracy", "follows_partner_label", "follows_partner_answer", "mean_confidence",
    "changed_answer"}}`` plus ``"partners"``; ``changed_answer`` is the share of answers that differ from the answer
    on the window's own inputs."""
    labels = np.asarray(labels)
    partners = mismatched_partners(labels, seed)
    lines = evidence_lines if evidence_lines is not None and probe.writes_evidence else None
    prompts = [probe.prompt_ids(question, None if lines is None else lines[i]) for i in range(len(labels))]
    tokens = probe.eeg_tokens(probe.encode(windows_uv))
    results, own = {}, None
    for name, (eeg, rows) in _swapped_inputs(tokens, prompts, partners, probe.emotion_token, lines is not None).items():
        probs = softmax(probe.label_log_likelihoods(rows, eeg), temperature)
        answer = probs.argmax(1)
        own = answer if name == "none" else own
        results[name] = {"accuracy": float(np.mean(answer == labels)),
                         "follows_partner_label": float(np.mean(answer == labels[partners])),
                         "follows_partner_answer": float(np.mean(answer == own[partners])),
                         "changed_answer": float(np.mean(answer != own)),
                         "mean_confidence": float(probs.max(1).mean())}
    results["partners"] = partners.tolist()
    return results


__all__ = ["CONFLICTS", "conflict_tests", "mismatched_partners"]
