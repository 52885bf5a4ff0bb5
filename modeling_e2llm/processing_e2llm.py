"""E2LLMProcessor: the EEG feature extractor, a Qwen tokenizer and the ChatML chat template in one object."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from transformers import BatchFeature
from transformers.processing_utils import _MARKED_RE, _UNMARKED, ProcessorMixin

from .answers import LABEL_KEY
from .eeg_evidence_features import evidence_features, evidence_statement, feature_keys
from .tokenization_e2llm import EEG_END_TOKEN, EEG_START_TOKEN, EEG_TOKEN

# ChatML (Qwen's format). An {"type": "eeg"} content part becomes <|eeg_start|><|eeg|><|eeg_end|>; the processor
# then expands <|eeg|> to `num_eeg_tokens` tokens per window of that part's recording. Newlines are emitted as
# expressions because `{%-` would eat literal ones.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'eeg' -%}{{- '" + EEG_START_TOKEN + EEG_TOKEN + EEG_END_TOKEN + "' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class E2LLMProcessor(ProcessorMixin):
    r"""
    Builds model inputs from conversations and EEG: feature extraction of the recordings, expansion of each `<|eeg|>`
    placeholder to `num_eeg_tokens` tokens per window of its recording, and left-padded tokenisation.

    `apply_chat_template` is `ProcessorMixin`'s: `tokenize=True` gives `input_ids` (with `return_dict=True` the whole
    `BatchFeature`); recordings come as `{"type": "eeg", "eeg": array_or_mne}` content parts or as
    `processor_kwargs={"eeg": ...}`, with their `sampling_rate`, `channel_names` and `units` in `processor_kwargs`.

    Args:
        feature_extractor ([`E2LLMFeatureExtractor`]): EEG -> `eeg_values`, `eeg_channel_ids`, `eeg_channel_mask`.
        tokenizer ([`PreTrainedTokenizerBase`]): a Qwen tokenizer with `<|eeg_start|>`, `<|eeg|>`, `<|eeg_end|>`.
        chat_template (`str`, *optional*): Jinja template; ChatML with `{"type": "eeg"}` parts by default.
        num_eeg_tokens (`int`): language-model tokens per EEG window (the model's `config.num_eeg_tokens`).
        evidence_spread (`list[float]`, *optional*): set by stage 3 when the model was trained with each window's
            measured evidence in its prompt (`e2llm.eeg_evidence_features.evidence_statement`): each feature's SD
            over the training windows, in `feature_keys()` order (None where a region had no channel). The
            `eeg-emotion` pipeline then writes that statement after the question of every window.
        evidence_strongest (`int`, *optional*): the statement's `strongest` (None: every feature).

    Example:

    ```python
    >>> import numpy as np
    >>> from e2llm import build_tiny_e2llm
    >>> model, processor = build_tiny_e2llm()
    >>> conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    >>> prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    >>> prompt
    '<|im_start|>user\n<|eeg_start|><|eeg|><|eeg_end|>Which emotion?<|im_end|>\n<|im_start|>assistant\n'
    >>> eeg = 20 * np.random.default_rng(0).standard_normal((3, 8 * 200))  # 8 s at 200 Hz, in µV
    >>> inputs = processor(
    ...     text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV", return_tensors="pt"
    ... )
    >>> tuple(inputs["eeg_values"].shape), int((inputs["input_ids"] == processor.eeg_token_id).sum())
    ((2, 3, 800), 8)
    >>> processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=["Fz", "Cz", "Pz"], units="uV",
    ...           return_metadata=True)["eeg_window_starts"].tolist()  # seconds from the recording's start
    [0.0, 4.0]
    ```"""

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None, num_eeg_tokens: int = 4,
                 evidence_spread: Sequence[float | None] | None = None, evidence_strongest: int | None = None):
        if tokenizer is not None and EEG_TOKEN not in tokenizer.get_vocab():
            raise ValueError(f"the tokenizer has no {EEG_TOKEN} token: call e2llm.add_eeg_tokens(tokenizer) first")
        self.num_eeg_tokens = int(num_eeg_tokens)
        self.set_evidence_prompt(evidence_spread, evidence_strongest)
        self.eeg_token = EEG_TOKEN
        self.eeg_token_id = tokenizer.convert_tokens_to_ids(EEG_TOKEN) if tokenizer is not None else None
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        eeg=None,
        sampling_rate: float | None = None,
        channel_names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        units: str | None = None,
        apply_filters: bool = True,
        padding: bool | str = True,
        return_tensors: str | None = None,
        images=None,
        videos=None,
        audio=None,
        return_text_replacement_offsets: bool = False,
        return_metadata: bool = False,
        **text_kwargs,
    ) -> BatchFeature:
        """Tokenise `text` (a prompt or a batch) with the EEG of each `<|eeg|>` placeholder, in order.

        `eeg` holds one recording per placeholder (an array `(n_channels, n_times)`, a batch, a list, or MNE Raw /
        Epochs); `sampling_rate`, `channel_names` and `units` describe it (see [`E2LLMFeatureExtractor`]). Other
        keyword arguments go to the tokenizer.

        Returns `input_ids`, `attention_mask` `(batch, seq_len)` and, with EEG, `eeg_values`
        `(n_windows, n_channels, n_times)`, `eeg_channel_ids`, `eeg_channel_mask` `(n_windows, n_channels)`: the
        model's inputs. With `return_metadata=True` (as for Transformers' video metadata) also `eeg_window_starts`
        `(n_windows,)`, seconds from each recording's start, and `eeg_num_windows` `(n_recordings,)`, for the caller
        (pop them before calling the model).
        """
        if images is not None or videos is not None or audio is not None:
            raise ValueError("E2LLMProcessor takes EEG (`eeg=`) and text; images, videos and audio are not supported")
        eeg_inputs = None
        if eeg is not None:
            eeg_inputs = self.feature_extractor(
                eeg,
                sampling_rate=sampling_rate,
                channel_names=channel_names,
                units=units,
                apply_filters=apply_filters,
                return_tensors=return_tensors,
            )
        texts = [text] if isinstance(text, str) else text
        self.validate_inputs(text=texts, eeg_inputs=eeg_inputs)
        replacements = [] if eeg_inputs is None else [
            self.replace_eeg_token(eeg_inputs, i) for i in range(len(eeg_inputs["eeg_num_windows"]))
        ]
        expanded, offsets = self.get_text_with_eeg_replacements(list(texts), replacements)
        data = dict(self.tokenizer(expanded, padding=padding, **text_kwargs))
        if return_text_replacement_offsets:
            data["text_replacement_offsets"] = offsets
        data.update(eeg_inputs or {})
        if not return_metadata:
            data = {k: v for k, v in data.items() if k not in self.unused_input_names}
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

    def validate_inputs(self, text: list[str] | None = None, eeg_inputs: BatchFeature | None = None, **kwargs):
        """`text` is a batch of strings holding one `<|eeg|>` per recording in `eeg_inputs` (the feature extractor's
        output, `None` without EEG)."""
        if text is None:
            raise ValueError("E2LLMProcessor needs `text` (use processor.feature_extractor for EEG alone)")
        if not all(isinstance(sample, str) for sample in text):
            raise ValueError("`text` must be a string or a list of strings")
        # `<|eeg|>` typed by a user and marked by `sanitize_control_tokens=True` is text, not a placeholder
        n_placeholders = sum(_MARKED_RE.sub("", sample).count(EEG_TOKEN) for sample in text)
        if eeg_inputs is None:
            if n_placeholders:
                raise ValueError(f"the text holds {n_placeholders} {EEG_TOKEN} placeholders but no `eeg` was given")
            return
        n_recordings = len(eeg_inputs["eeg_num_windows"])
        if n_recordings != n_placeholders:
            raise ValueError(
                f"the text holds {n_placeholders} {EEG_TOKEN} placeholders but {n_recordings} EEG recordings were "
                "given: pass one recording per {'type': 'eeg'} part"
            )

    def replace_eeg_token(self, eeg_inputs: BatchFeature, eeg_idx: int, **kwargs) -> str:
        """The text replacing the `eeg_idx`-th `<|eeg|>`: `num_eeg_tokens` placeholders per window of its recording."""
        return EEG_TOKEN * (int(eeg_inputs["eeg_num_windows"][eeg_idx]) * self.num_eeg_tokens)

    def get_text_with_eeg_replacements(self, text: list[str], replacements: list[str]):
        """Each `<|eeg|>` of `text`, in order, replaced by the next of `replacements`; also the replacement offsets per
        sample, in the format `ProcessorMixin.get_text_with_replacements` gives them (`span`, `new_span`, ...), which
        `apply_chat_template` uses to shift the assistant masks."""
        pending = iter(replacements)
        expanded, batch_offsets = [], []
        for sample in text:
            pieces, offsets, position, growth = [], [], 0, 0
            for match in re.finditer(_UNMARKED + re.escape(EEG_TOKEN), sample) if replacements else ():
                start, end = match.span()
                replacement = next(pending)
                pieces += [sample[position:start], replacement]
                offsets.append({
                    "type": "eeg", "span": (start, end), "new_span": (start + growth, start + growth + len(replacement)),
                    "text": EEG_TOKEN, "replacement": replacement,
                })
                growth += len(replacement) - (end - start)
                position = end
            expanded.append("".join(pieces) + sample[position:])
            batch_offsets.append(offsets)
        return expanded, batch_offsets

    def _multimodal_inputs_from_conversations(self, conversations, audio_loading_params, load_audio_from_video=False):
        """The recordings of `{"type": "eeg", "eeg": ...}` content parts, in conversation order (`apply_chat_template`
        passes them to `__call__` as `eeg`); parts without data take theirs from `processor_kwargs["eeg"]`."""
        recordings = [
            part["eeg"]
            for conversation in conversations
            for message in conversation
            if not isinstance(message.get("content"), str)
            for part in message.get("content") or []
            if part.get("type") == "eeg" and part.get("eeg") is not None
        ]
        empty = [[] for _ in conversations]
        return empty, empty, [], ({"eeg": recordings} if recordings else {})

    def set_evidence_prompt(self, spread: Sequence[float | None] | None, strongest: int | None = None) -> None:
        """Write each window's measured evidence into its prompt (`spread`: each feature's SD over the training
        windows, NaN or None where undefined), or stop doing so (`spread=None`)."""
        if spread is not None:
            spread = [None if v is None or not math.isfinite(float(v)) else float(v) for v in spread]
            if len(spread) != len(feature_keys()):
                raise ValueError(f"evidence_spread needs one value per evidence feature ({len(feature_keys())}), "
                                 f"got {len(spread)}")
            if any(v is not None and v <= 0 for v in spread):
                raise ValueError("evidence_spread values must be positive (a feature's SD over training windows)")
        if strongest is not None and int(strongest) < 1:
            raise ValueError(f"evidence_strongest must be at least 1 or None, got {strongest}")
        self.evidence_spread = spread
        self.evidence_strongest = None if strongest is None else int(strongest)

    def evidence_statements(self, power_db, channel_names: Sequence[str], reference_db) -> list[str]:
        """The measured-evidence line of each window: band power `(n_windows, n_bands, n_channels)` dB of the
        windows and of their reference (`(n_bands, n_channels)`, or one per window), on `channel_names`."""
        if self.evidence_spread is None:
            raise ValueError("this processor writes no evidence into prompts (evidence_spread is None)")
        spread = np.array([np.nan if v is None else v for v in self.evidence_spread])
        features = evidence_features(power_db, channel_names, reference_db)
        return [evidence_statement(features, spread, i, self.evidence_strongest) for i in range(len(features.de))]

    @property
    def unused_input_names(self) -> list[str]:
        """What the feature extractor returns for the caller, not the model (kept with `return_metadata=True`)."""
        return ["eeg_num_windows", "eeg_window_starts"]

    def label_candidate_ids(self, label_names: Sequence[str]) -> list[list[int]]:
        """Token ids of each label as it follows `Emotion:` in an answer (with its leading space)."""
        prefix = self.tokenizer(f"{LABEL_KEY}:", add_special_tokens=False)["input_ids"]
        candidates = []
        for name in label_names:
            ids = self.tokenizer(f"{LABEL_KEY}: {name}", add_special_tokens=False)["input_ids"]
            if ids[: len(prefix)] != prefix:
                raise ValueError(f"the tokenizer merges {LABEL_KEY!r}: with label {name!r}; cannot score it")
            candidates.append(ids[len(prefix) :])
        return candidates

    @property
    def model_input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names) + list(self.feature_extractor.model_input_names)


__all__ = ["CHAT_TEMPLATE", "E2LLMProcessor"]
