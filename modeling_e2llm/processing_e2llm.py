"""E2LLMProcessor: the EEG feature extractor, a Qwen tokenizer and the ChatML chat template in one object."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils.chat_template_utils import render_jinja_template

from .answers import LABEL_KEY
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

    Args:
        feature_extractor ([`E2LLMFeatureExtractor`]): EEG -> `eeg_values`, `eeg_channel_ids`, `eeg_channel_mask`.
        tokenizer ([`PreTrainedTokenizerBase`]): a Qwen tokenizer with `<|eeg_start|>`, `<|eeg|>`, `<|eeg_end|>`.
        chat_template (`str`, *optional*): Jinja template; ChatML with `{"type": "eeg"}` parts by default.
        num_eeg_tokens (`int`): language-model tokens per EEG window (the model's `config.num_eeg_tokens`).

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
    ```"""

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None, num_eeg_tokens: int = 4):
        if tokenizer is not None and EEG_TOKEN not in tokenizer.get_vocab():
            raise ValueError(f"the tokenizer has no {EEG_TOKEN} token: call e2llm.add_eeg_tokens(tokenizer) first")
        self.num_eeg_tokens = int(num_eeg_tokens)
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
        **text_kwargs,
    ) -> BatchFeature:
        """Tokenise `text` (a prompt or a batch) with the EEG of each `<|eeg|>` placeholder, in order.

        `eeg` holds one recording per placeholder (an array `(n_channels, n_times)`, a batch, a list, or MNE Raw /
        Epochs); `sampling_rate`, `channel_names` and `units` describe it (see [`E2LLMFeatureExtractor`]).
        Returns `input_ids`, `attention_mask` `(batch, seq_len)` and, with EEG, `eeg_values`
        `(n_windows, n_channels, n_times)`, `eeg_channel_ids`, `eeg_channel_mask` `(n_windows, n_channels)`.
        """
        return self._encode(
            text, eeg, sampling_rate, channel_names, units, apply_filters, padding, return_tensors, None, text_kwargs
        )

    def _encode(
        self, text, eeg, sampling_rate, channel_names, units, apply_filters, padding, return_tensors,
        generation_spans, text_kwargs,
    ) -> BatchFeature:
        """`__call__`; with `generation_spans` (character spans of assistant text per prompt, before placeholder
        expansion) also `assistant_masks` `(batch, seq_len)`: 1 on tokens the model is trained to write."""
        if text is None:
            raise ValueError("E2LLMProcessor needs `text` (use processor.feature_extractor for EEG alone)")
        texts = [text] if isinstance(text, str) else list(text)
        n_placeholders = [t.count(EEG_TOKEN) for t in texts]
        eeg_inputs = {}
        windows_per_recording: list[int] = []
        if eeg is None:
            if sum(n_placeholders):
                raise ValueError(f"the text holds {sum(n_placeholders)} {EEG_TOKEN} placeholders but no `eeg` was given")
        else:
            features = self.feature_extractor(
                eeg,
                sampling_rate=sampling_rate,
                channel_names=channel_names,
                units=units,
                apply_filters=apply_filters,
                return_tensors=return_tensors,
            )
            windows_per_recording = [int(n) for n in features["eeg_num_windows"]]
            if len(windows_per_recording) != sum(n_placeholders):
                raise ValueError(
                    f"the text holds {sum(n_placeholders)} {EEG_TOKEN} placeholders but {len(windows_per_recording)} "
                    "EEG recordings were given: pass one recording per {'type': 'eeg'} part"
                )
            eeg_inputs = {name: features[name] for name in self.feature_extractor.model_input_names}
        expanded, spans = self._expand_placeholders(texts, windows_per_recording, generation_spans)
        if spans is None:
            encoding = self.tokenizer(expanded, padding=padding, return_tensors=return_tensors, **text_kwargs)
            return BatchFeature(data={**encoding, **eeg_inputs}, tensor_type=return_tensors)
        encoding = self.tokenizer(expanded, padding=padding, return_offsets_mapping=True, **text_kwargs)
        offsets = encoding.pop("offset_mapping")
        encoding["assistant_masks"] = [
            [int(any(end > lo and start < hi and end > start for lo, hi in row_spans)) for start, end in row_offsets]
            for row_offsets, row_spans in zip(offsets, spans)
        ]
        return BatchFeature(data={**encoding, **eeg_inputs}, tensor_type=return_tensors)

    def _expand_placeholders(self, texts: list[str], windows_per_recording: list[int], spans=None):
        """Repeat each `<|eeg|>` `num_eeg_tokens` times per window of its recording; shift `spans` to match."""
        counts = iter(windows_per_recording)
        expanded, shifted = [], []
        for i, text in enumerate(texts):
            pieces = text.split(EEG_TOKEN)
            out, grown, growth = [pieces[0]], [], 0  # grown: (original position, extra characters before it)
            position = len(pieces[0])
            for piece in pieces[1:]:
                copies = next(counts) * self.num_eeg_tokens
                out += [EEG_TOKEN * copies, piece]
                growth += (copies - 1) * len(EEG_TOKEN)
                position += len(EEG_TOKEN)
                grown.append((position, growth))
                position += len(piece)
            expanded.append("".join(out))
            if spans is not None:
                def shift(index, grown=grown):
                    return index + max([g for p, g in grown if p <= index], default=0)

                shifted.append([(shift(lo), shift(hi)) for lo, hi in spans[i]])
        return expanded, (shifted if spans is not None else None)

    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt=False, tokenize=False,
                            eeg=None, return_tensors=None, return_assistant_tokens_mask=False, **kwargs):
        """Render conversation(s) with the ChatML template; with `tokenize=True` also run `__call__` on `eeg`.

        With `return_assistant_tokens_mask=True` (needs `tokenize=True`) the result also holds `assistant_masks`:
        1 on the assistant's tokens (inside the template's `{% generation %}` blocks), 0 elsewhere."""
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        if return_assistant_tokens_mask and not tokenize:
            raise ValueError("return_assistant_tokens_mask=True needs tokenize=True")
        template = chat_template or self.chat_template
        rendered, spans = render_jinja_template(
            conversations=conversations,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            return_assistant_tokens_mask=return_assistant_tokens_mask,
            **self.tokenizer.special_tokens_map,
        )
        if not tokenize:
            return rendered if batched else rendered[0]
        encode_keys = ("sampling_rate", "channel_names", "units", "apply_filters", "padding")
        options = {key: kwargs.pop(key) for key in encode_keys if key in kwargs}
        return self._encode(
            rendered,
            eeg,
            options.get("sampling_rate"),
            options.get("channel_names"),
            options.get("units"),
            options.get("apply_filters", True),
            options.get("padding", True),
            return_tensors,
            spans if return_assistant_tokens_mask else None,
            kwargs,
        )

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

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names) + list(self.feature_extractor.model_input_names)


__all__ = ["CHAT_TEMPLATE", "E2LLMProcessor"]
