"""A model's inputs taken apart, with its public methods only, for checks that change one input at a time.

`ModelProbe` encodes windows with the processor (`E2LLMProcessor`, its feature extractor), projects them with
`model.get_eeg_features`, reads the encoder's emotion head (stage 1's head, when the encoder has an emotion token),
builds the label-scoring prompt of each window the way the ``eeg-emotion`` pipeline does for
``return_rationale=False`` (the chat template with the question, the window's measured-evidence line when the model
was trained with one, then ``Emotion:``), and scores the labels with `model.score_labels` on EEG tokens it is given:
so the conflict tests can give a prompt one window's text and another window's EEG tokens, or one window's tokens
with another window's emotion token, and ERASER checks can score perturbed windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from e2llm.scoring_e2llm import label_prompt_ids, left_pad

DEFAULT_QUESTION = "Which emotion does this EEG show? Explain your reasoning from the signal, then answer."


class ModelProbe:
    """Public-method access to one model on windows of one montage (`sampling_rate`, `channel_names`, `units`)."""

    def __init__(self, model, processor, sampling_rate: float, channel_names: Sequence[str], units: str,
                 batch_size: int = 32):
        self.model, self.processor = model, processor
        self.signal = {"sampling_rate": float(sampling_rate), "channel_names": list(channel_names), "units": units}
        self.batch_size = int(batch_size)
        self.label_names = list(model.config.label_names)
        self.candidate_ids = processor.label_candidate_ids(self.label_names)
        self.emotion_token = bool(getattr(model.config.eeg_config, "emotion_token", False))

    @property
    def writes_evidence(self) -> bool:
        """Whether the model's prompts carry the measured-evidence line (its processor writes one)."""
        return getattr(self.processor, "evidence_spread", None) is not None

    def encode(self, windows_uv) -> dict[str, torch.Tensor]:
        """Model EEG inputs of windows `(n, n_channels, n_times)` µV (one window each, no filtering)."""
        out = self.processor.feature_extractor(list(np.asarray(windows_uv, dtype=np.float32)), **self.signal,
                                               apply_filters=False, return_tensors="pt")
        if int(out["eeg_num_windows"].sum()) != len(windows_uv):
            raise ValueError("each window must give exactly one model window: pass windows of the model's length")
        device = self.model.device
        return {name: out[name].to(device) for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}

    @torch.no_grad()
    def eeg_tokens(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Projected EEG tokens `(n, num_eeg_tokens, hidden)` (`model.get_eeg_features`), in batches."""
        parts = []
        for start in range(0, len(inputs["eeg_values"]), self.batch_size):
            chunk = {k: v[start : start + self.batch_size] for k, v in inputs.items()}
            parts.append(self.model.get_eeg_features(**chunk))
        return torch.cat(parts)

    @torch.no_grad()
    def head_probs(self, inputs: dict[str, torch.Tensor]) -> np.ndarray | None:
        """The encoder's emotion head `(n, n_labels)` probabilities (None when the encoder has no emotion token)."""
        if not self.emotion_token:
            return None
        encoder = self.model.model.eeg_encoder
        parts = []
        for start in range(0, len(inputs["eeg_values"]), self.batch_size):
            chunk = {k: v[start : start + self.batch_size] for k, v in inputs.items()}
            parts.append(encoder(**chunk, return_dict=True).emotion_logits.float().softmax(-1).cpu())
        return torch.cat(parts).double().numpy()

    def prompt_ids(self, question: str | None = None, evidence: str | None = None) -> torch.Tensor:
        """The label-scoring prompt of one window: chat template, `<|eeg|>` expanded to one window's tokens, the
        question (and the evidence line on a new line), then ``Emotion:``."""
        content = [{"type": "eeg"}, {"type": "text", "text": question or DEFAULT_QUESTION}]
        if evidence is not None:
            content.append({"type": "text", "text": "\n" + evidence})
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        expanded = text.replace(self.processor.eeg_token, self.processor.eeg_token * self.processor.num_eeg_tokens)
        ids = self.processor.tokenizer(expanded)["input_ids"] + label_prompt_ids(self.processor.tokenizer, None)[1]
        return torch.tensor(ids, dtype=torch.long)

    @torch.no_grad()
    def label_log_likelihoods(self, prompts: Sequence[torch.Tensor], tokens: torch.Tensor) -> np.ndarray:
        """`(n, n_labels)` log-likelihood of each label after prompt i with EEG tokens `tokens[i]`."""
        if len(prompts) != len(tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(tokens)} windows of EEG tokens")
        pad, out = self.processor.tokenizer.pad_token_id, []
        for start in range(0, len(prompts), self.batch_size):
            rows = [p.to(self.model.device) for p in prompts[start : start + self.batch_size]]
            input_ids, attention_mask = left_pad(rows, pad)
            out.append(self.model.score_labels(input_ids, attention_mask, self.candidate_ids,
                                               eeg_features=tokens[start : start + self.batch_size]).float().cpu())
        return torch.cat(out).double().numpy()


def softmax(log_likelihoods: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Label probabilities `(n, n_labels)` from log-likelihoods, at `temperature`."""
    z = np.asarray(log_likelihoods, dtype=np.float64) / float(temperature)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


__all__ = ["DEFAULT_QUESTION", "ModelProbe", "softmax"]
