"""E2LLMProcessor: the EEG feature extractor, a Qwen tokenizer and the ChatML chat template in one object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin, Unpack

from .answers import LABEL_KEY
from .eeg_evidence_features import evidence_features, evidence_statement
from .evidence_statistics_e2llm import check_statistics, spread_vector, statistics_from_legacy
from .feature_extraction_e2llm import METADATA_KEYS
from .kwargs_e2llm import E2LLMProcessorKwargs
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



_TOKENIZER_AFTER_EXPANSION = ("padding", "truncation", "max_length", "pad_to_multiple_of", "padding_side",
                              "return_tensors", "return_attention_mask")


class E2LLMProcessor(ProcessorMixin):
    r"""
    Builds model inputs from conversations and EEG: feature extraction of the recordings, expansion of each `<|eeg|>`
    placeholder to `num_eeg_tokens` tokens per window of its recording, and left-padded tokenisation.

    `apply_chat_template` is `ProcessorMixin`'s: `tokenize=True` gives `input_ids` (with `return_dict=True` the whole
    `BatchFeature`); the recordings of its `{"type": "eeg"}` parts come as `processor_kwargs={"eeg": [...]}`, in
    order, with their `sampling_rate`, `channel_names` and `units` in `processor_kwargs`. Keyword arguments are
    typed the Transformers 5 way (`E2LLMProcessorKwargs`).

    Args:
        feature_extractor ([`E2LLMFeatureExtractor`]): EEG -> `eeg_values`, `eeg_channel_ids`, `eeg_channel_mask`.
        tokenizer ([`PreTrainedTokenizerBase`]): a Qwen tokenizer with `<|eeg_start|>`, `<|eeg|>`, `<|eeg_end|>`.
        chat_template (`str`, *optional*): Jinja template; ChatML with `{"type": "eeg"}` parts by default.
        num_eeg_tokens (`int`): language-model tokens per EEG window (the model's `config.num_eeg_tokens`).
        evidence_statistics (`dict`, *optional*): what the model ships to measure evidence against (set by stage 3;
            format in `e2llm.evidence_statistics_e2llm`): each feature's spread over the training windows, the
            training windows' mean band power per channel (the reference for inputs too short to be their own),
            label signatures, whether prompts carry each window's measured evidence, provenance.
        evidence_spread, evidence_strongest: the older form (folders saved before `evidence_statistics`): a model
            whose prompts carry the evidence line with these spreads; converted to `evidence_statistics`.

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

    valid_processor_kwargs = E2LLMProcessorKwargs

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None, num_eeg_tokens: int = 4,
                 evidence_statistics: Mapping | None = None, evidence_spread: Sequence[float | None] | None = None,
                 evidence_strongest: int | None = None):
        if tokenizer is not None and EEG_TOKEN not in tokenizer.get_vocab():
            raise ValueError(f"the tokenizer has no {EEG_TOKEN} token: call e2llm.add_eeg_tokens(tokenizer) first")
        self.num_eeg_tokens = int(num_eeg_tokens)
        if evidence_statistics is not None and evidence_spread is not None:
            raise ValueError("pass evidence_statistics, or the older evidence_spread, not both")
        # a folder saved before evidence_statistics existed holds evidence_spread/evidence_strongest: still loads
        self.set_evidence_statistics(evidence_statistics if evidence_spread is None
                                     else statistics_from_legacy(evidence_spread, evidence_strongest))
        self.eeg_token = EEG_TOKEN
        self.eeg_token_id = tokenizer.convert_tokens_to_ids(EEG_TOKEN) if tokenizer is not None else None
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    def __call__(self, text: str | Sequence[str] | None = None, eeg=None, images=None, videos=None, audio=None,
                 **kwargs: Unpack[E2LLMProcessorKwargs]) -> BatchFeature:
        """Tokenise `text` (a prompt or a batch) with the EEG of each `<|eeg|>` placeholder, in order.

        `eeg` holds one recording per placeholder (an array `(n_channels, n_times)`, a batch, a list, or MNE Raw /
        Epochs); `sampling_rate`, `channel_names`, `units` (and `apply_filters`, `channel_map`, `line_freq`) describe
        it (see [`E2LLMFeatureExtractor`]); tokenizer arguments (`padding`, `add_special_tokens`, ...) go to the
        tokenizer. Each placeholder is expanded at the token level to `num_eeg_tokens` placeholder ids per window of
        its recording, so a `<|eeg|>` typed by a user under `sanitize_control_tokens=True` (encoded as text by the
        tokenizer) is never taken for one.

        Returns `input_ids`, `attention_mask` `(batch, seq_len)` and, with EEG, `eeg_values`
        `(n_windows, n_channels, n_times)`, `eeg_channel_ids`, `eeg_channel_mask` `(n_windows, n_channels)`: the
        model's inputs. With `return_metadata=True` also `eeg_window_starts` `(n_windows,)` (seconds from each
        recording's start), `eeg_num_windows` `(n_recordings,)`, `eeg_channels` and `eeg_filter` (per recording: the
        channels used and dropped, the filter applied), for the caller (pop them before calling the model).
        """
        if images is not None or videos is not None or audio is not None:
            raise ValueError("E2LLMProcessor takes EEG (`eeg=`) and text; images, videos and audio are not supported")
        merged = self._merge_kwargs(E2LLMProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs, eeg_kwargs = merged["text_kwargs"], merged["audio_kwargs"]
        return_tensors = text_kwargs.get("return_tensors", eeg_kwargs.pop("return_tensors", None))
        eeg_inputs = None if eeg is None else self.feature_extractor(eeg, **eeg_kwargs)
        texts = [text] if isinstance(text, str) else text
        if texts is None or not all(isinstance(sample, str) for sample in texts):
            raise ValueError("E2LLMProcessor needs `text`, a string or a list of strings (use "
                             "processor.feature_extractor for EEG alone)")
        data = self._tokenize_with_eeg(list(texts), eeg_inputs, text_kwargs)
        if merged.get("return_text_replacement_offsets"):  # expansion happens on token ids: no text moved
            data["text_replacement_offsets"] = [[] for _ in texts]
        for key, value in (eeg_inputs or {}).items():
            if merged.get("return_metadata") or key not in self.unused_input_names:
                data[key] = value
        return BatchFeature(data, tensor_type=return_tensors,
                            skip_tensor_conversion=[*self.skip_tensor_conversion, "eeg_channels", "eeg_filter"])

    def _tokenize_with_eeg(self, texts: list[str], eeg_inputs, text_kwargs: dict) -> dict:
        """Tokenise, check the placeholder count, expand each placeholder id to its recording's run, then truncate
        and pad (`text_kwargs` as for the tokenizer)."""
        after = {key: text_kwargs.pop(key) for key in _TOKENIZER_AFTER_EXPANSION if key in text_kwargs}
        encoded = self.tokenizer(texts, padding=False, truncation=False, **text_kwargs)
        rows = {key: [list(row) for row in encoded[key]] for key in encoded if key != "attention_mask"}
        counts = [row.count(self.eeg_token_id) for row in rows["input_ids"]]
        self.validate_inputs(text=texts, eeg_inputs=eeg_inputs, n_placeholders=sum(counts))
        runs = iter([] if eeg_inputs is None else [self.eeg_placeholder_count(eeg_inputs, i)
                                                    for i in range(len(eeg_inputs["eeg_num_windows"]))])
        for r, ids in enumerate(rows["input_ids"]):
            repeat = [next(runs) if token == self.eeg_token_id else 1 for token in ids]
            for key in rows:
                rows[key][r] = [value for value, n in zip(rows[key][r], repeat) for _ in range(n)]
        return self._pad(rows, **after)

    def _pad(self, rows: dict, padding=True, truncation=None, max_length=None, pad_to_multiple_of=None,
             padding_side=None, return_tensors=None, return_attention_mask=None) -> dict:
        """Truncate (never through EEG placeholders) and pad `rows` (`{key: list of token rows}`); adds
        `attention_mask`."""
        if truncation and max_length is not None:
            for r, ids in enumerate(rows["input_ids"]):
                if self.eeg_token_id in ids[max_length:]:
                    raise ValueError(f"max_length={max_length} would cut the EEG placeholders of prompt {r}")
                for key in rows:
                    rows[key][r] = rows[key][r][:max_length]
        lengths = [len(ids) for ids in rows["input_ids"]]
        width = max(lengths) if padding not in (False, "do_not_pad") else None
        if padding == "max_length" and max_length is not None:
            width = max_length
        if width is not None and pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        side = padding_side or self.tokenizer.padding_side
        fill = {"input_ids": self.tokenizer.pad_token_id, "offset_mapping": (0, 0)}
        out = {key: [] for key in rows}
        masks = []
        for r, n in enumerate(lengths):
            pad = 0 if width is None else width - n
            for key in rows:
                filler = [fill.get(key, 0)] * pad
                out[key].append(filler + rows[key][r] if side == "left" else rows[key][r] + filler)
            masks.append([0] * pad + [1] * n if side == "left" else [1] * n + [0] * pad)
        if return_attention_mask is not False:
            out["attention_mask"] = masks
        return out

    def apply_chat_template(self, conversation, *args, **kwargs):
        """`ProcessorMixin.apply_chat_template`, unchanged, after a check that each conversation holds messages (an
        empty one would otherwise end in an IndexError inside Transformers)."""
        batch = conversation if isinstance(conversation, (list, tuple)) and conversation and \
            isinstance(conversation[0], (list, tuple)) else [conversation]
        for k, messages in enumerate(batch):
            if isinstance(messages, (list, tuple)) and len(messages) == 0:
                where = f"conversation {k} of the batch" if batch is conversation else \
                    "the conversation"
                raise ValueError(f"apply_chat_template: {where} is empty; pass a list of messages such as "
                                 "[{'role': 'user', 'content': [{'type': 'eeg'}, {'type': 'text', 'text': "
                                 "'Which emotion?'}]}] (or a list of such conversations)")
        return super().apply_chat_template(conversation, *args, **kwargs)

    def validate_inputs(self, text: list[str] | None = None, eeg_inputs: BatchFeature | None = None,
                        n_placeholders: int = 0, **kwargs):
        """`text` holds one `<|eeg|>` placeholder (`n_placeholders`, counted on token ids) per recording of
        `eeg_inputs` (the feature extractor's output, `None` without EEG)."""
        if eeg_inputs is None:
            if n_placeholders:
                raise ValueError(f"the text holds {n_placeholders} {EEG_TOKEN} placeholders but no `eeg` was given: "
                                 "pass the recordings as eeg=[...] (apply_chat_template: processor_kwargs={'eeg': "
                                 "[...]}), one per {'type': 'eeg'} part, in order")
            return
        n_recordings = len(eeg_inputs["eeg_num_windows"])
        if n_recordings != n_placeholders:
            raise ValueError(
                f"the text holds {n_placeholders} {EEG_TOKEN} placeholders but {n_recordings} EEG recordings were "
                "given: pass one recording per {'type': 'eeg'} part"
            )

    def eeg_placeholder_count(self, eeg_inputs: BatchFeature, eeg_idx: int) -> int:
        """How many placeholder ids the `eeg_idx`-th `<|eeg|>` becomes: `num_eeg_tokens` per window of its recording."""
        return int(eeg_inputs["eeg_num_windows"][eeg_idx]) * self.num_eeg_tokens

    def replace_eeg_token(self, eeg_inputs: BatchFeature, eeg_idx: int, **kwargs) -> str:
        """The text the `eeg_idx`-th `<|eeg|>` stands for (Transformers' `replace_*_token` hook)."""
        return EEG_TOKEN * self.eeg_placeholder_count(eeg_inputs, eeg_idx)

    # ---------------------------------------------------------------- measured evidence
    def set_evidence_statistics(self, statistics: Mapping | None) -> None:
        """Store the statistics the model ships (`e2llm.evidence_statistics_e2llm`: spreads, reference band power per
        channel, label signatures, whether prompts carry the evidence line, provenance), or none (`None`)."""
        self.evidence_statistics = check_statistics(statistics)

    def set_evidence_prompt(self, spread: Sequence[float | None] | None, strongest: int | None = None) -> None:
        """Older form of `set_evidence_statistics`: prompts carry the evidence line with these spreads
        (`feature_keys()` order), or stop doing so (`spread=None`)."""
        self.set_evidence_statistics(statistics_from_legacy(spread, strongest))

    @property
    def evidence_in_prompt(self) -> bool:
        """Whether the model was trained with each window's measured evidence after the question."""
        return bool(self.evidence_statistics and self.evidence_statistics["prompt"]["evidence_in_prompt"])

    @property
    def evidence_spread(self) -> list[float | None] | None:
        """The spreads in `feature_keys()` order when prompts carry the evidence line (the older attribute)."""
        if not self.evidence_in_prompt:
            return None
        return [None if np.isnan(v) else float(v) for v in spread_vector(self.evidence_statistics)]

    @property
    def evidence_strongest(self) -> int | None:
        return self.evidence_statistics["prompt"]["strongest"] if self.evidence_in_prompt else None

    def evidence_statements(self, power_db, channel_names: Sequence[str], reference_db) -> list[str]:
        """The measured-evidence line of each window: band power `(n_windows, n_bands, n_channels)` dB of the
        windows and of their reference (`(n_bands, n_channels)`, or one per window), on `channel_names`."""
        if not self.evidence_in_prompt:
            raise ValueError("this processor writes no evidence into prompts (evidence_statistics says "
                             "evidence_in_prompt is false or there are none)")
        features = evidence_features(power_db, channel_names, reference_db)
        spread = spread_vector(self.evidence_statistics)
        return [evidence_statement(features, spread, i, self.evidence_strongest) for i in range(len(features.de))]

    @property
    def unused_input_names(self) -> list[str]:
        """What the feature extractor returns for the caller, not the model (kept with `return_metadata=True`)."""
        return list(METADATA_KEYS)

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


__all__ = ["CHAT_TEMPLATE", "E2LLMProcessor", "E2LLMProcessorKwargs"]
