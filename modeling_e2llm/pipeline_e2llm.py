"""The `eeg-emotion` pipeline: EEG in any common form -> emotion label, probabilities and rationale per window.

Importing `e2llm` registers it, so `pipeline("eeg-emotion", model=folder)` works. It needs only torch,
transformers, numpy and scipy (MNE is imported when a file path is given or evidence pictures are asked
for), so it can travel with a model as remote code.
"""

from __future__ import annotations

import copy
import os
import types
import warnings
from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch
from transformers import GenerationConfig, Pipeline

from .answers import LABEL_KEY, parse_answer
from .eeg_evidence_features import montage_support, remove_unsupported_claims
from .evidence_e2llm import (
    EVIDENCE_BANDS,
    band_power_db,
    baseline_on_channels,
    evidence_map,
    integrated_gradients,
    normalized_like_extractor,
    relative_band_power,
)
from .recording_file_e2llm import open_recording
from .scoring_e2llm import LABEL_LINE, label_prompt_ids, left_pad, score_candidates
from .validation_e2llm import check_finite_scores, check_pipeline_arguments, check_user_text

STREAM_WINDOWS = 64  # windows computed, scored and reduced at a time for one continuous recording (bounded memory)
DEFAULT_QUESTION = "Which emotion does this EEG show? Explain your reasoning from the signal, then answer."


def _is_mne_like(obj) -> bool:
    return hasattr(obj, "get_data") and hasattr(obj, "info") and hasattr(obj, "ch_names")


def _read_path(path) -> object:
    """Any recording MNE reads (EDF, BDF, FIF, BrainVision, EEGLAB, ...) as an `EEGFile` of its EEG channels: the
    reading path `e2llm predict` uses too (non-EEG channels dropped by name, damaged files refused)."""
    return open_recording(path)


class EEGEmotionPipeline(Pipeline):
    r"""
    Emotion recognition from EEG with an E2LLM: per window, a generated rationale and label, and a probability per
    label from label scoring (the log-likelihood of each label string after the rationale).

    Each window's EEG is encoded once per call: `generate` and label scoring share the projected features. Label
    scoring continues the generated token ids (not their decoded text) and runs the prompt + rationale once, scoring
    every label from its cache (`e2llm.scoring_e2llm`).

    One continuous recording (a file, a Raw, an array) runs in bounded memory: its windows are computed, scored and
    reduced to results `STREAM_WINDOWS` at a time (`E2LLMFeatureExtractor.iter_windows`, equal to the whole-signal
    chain), so a night's recording costs the memory of a few minutes of it; the result is the same.

    Inputs: a `(n_channels, n_times)` array or tensor (with `sampling_rate`, `channel_names` and `units`), an MNE
    `Raw`, an MNE `Epochs` (one result per epoch), a path to any MNE-readable recording, a dict
    `{"eeg": ..., "sampling_rate": ..., "channel_names": ..., "units": ..., "question": ...}`, or a list of these
    (windows of all items are batched together, `batch_size` windows per model call).

    Output per recording of one window: `{"label", "scores", "rationale", "generated_text", "parseable", "start",
    "end"}`. `label` is the label parsed from the generated answer, None when the answer cannot be parsed
    (`parseable` False): it is never guessed. `scores` maps each label to its probability (summing to 1). A
    recording of several windows gives `{"label", "scores", "votes", "n_unparseable", "windows": [...]}`: the
    aggregate `label` is the most frequent parsed window label (ties broken by the mean scores; None when no window
    parses) and `scores` the mean of the windows' scores.

    Parameters (at construction or call): `sampling_rate`, `channel_names`, `units` (array input), `question`
    (the user's question; or `prompt`, a full chat conversation with one `{"type": "eeg"}` part),
    `apply_filters` (False for windows already band-passed), `return_rationale` (False: label scoring only, no
    generation; `label` is then the most probable label), `extra_fields` (`{"Valence": [...]}` to parse from the
    answer), `max_new_tokens` and other generation parameters, `return_evidence` (scalp maps saved as PNG in
    `evidence_dir`; needs MNE and matplotlib; see `e2llm.evidence_e2llm`), `baseline` (a recording whose band power
    the evidence is relative to) or `baseline_power` (its mean band power in dB, `(n_bands, n_channels)` over the
    input's channels; also a dict input's entry), `attribution_steps` (integrated-gradient steps, 16).

    A model trained with the measured evidence in its prompts (its processor has `evidence_spread`) gets each
    window's evidence line after the question, relative to `baseline` / `baseline_power`, else to the mean over the
    input's windows; a single window without a baseline is refused.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import pipeline
    >>> from e2llm import SEED_CHANNELS, build_tiny_e2llm
    >>> model, processor = build_tiny_e2llm()
    >>> pipe = pipeline("eeg-emotion", model=model, processor=processor)
    >>> eeg = 20 * np.random.default_rng(0).standard_normal((62, 800))
    >>> out = pipe(eeg, sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV", max_new_tokens=8)
    >>> round(sum(out["scores"].values()), 4)
    1.0
    ```
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=128, do_sample=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("the eeg-emotion pipeline needs the model's E2LLMProcessor (processor=...)")
        self.label_names = list(self.model.config.label_names)
        self.candidate_ids = self.processor.label_candidate_ids(self.label_names)
        self._unnormalized_processor = None

    def _sanitize_parameters(self, sampling_rate=None, channel_names=None, units=None, question=None, prompt=None,
                             apply_filters=None, return_rationale=None, extra_fields=None, max_new_tokens=None,
                             generate_kwargs=None, return_evidence=None, evidence_dir=None, baseline=None,
                             baseline_power=None, attribution_steps=None, **kwargs):
        check_pipeline_arguments(apply_filters=apply_filters, return_rationale=return_rationale,
                                 return_evidence=return_evidence, max_new_tokens=max_new_tokens,
                                 attribution_steps=attribution_steps)
        check_user_text(question, prompt, getattr(self.processor, "tokenizer", None))
        preprocess = {k: v for k, v in dict(sampling_rate=sampling_rate, channel_names=channel_names, units=units,
                                            question=question, prompt=prompt, apply_filters=apply_filters,
                                            return_evidence=return_evidence, baseline=baseline,
                                            baseline_power=baseline_power).items() if v is not None}
        generate = dict(generate_kwargs or {})
        generate.update({k: kwargs.pop(k) for k in list(kwargs) if k in vars(GenerationConfig())})
        if kwargs:
            raise ValueError(f"unknown eeg-emotion pipeline arguments: {sorted(kwargs)}")
        if max_new_tokens is not None:
            if "max_new_tokens" in generate:
                raise ValueError("max_new_tokens is given twice: as an argument and in generate_kwargs")
            generate["max_new_tokens"] = max_new_tokens
        forward = {"generate_kwargs": generate} if generate else {}
        forward.update({k: v for k, v in dict(return_rationale=return_rationale, return_evidence=return_evidence,
                                              attribution_steps=attribution_steps).items() if v is not None})
        postprocess = {k: v for k, v in dict(extra_fields=extra_fields, return_evidence=return_evidence,
                                             evidence_dir=evidence_dir).items() if v is not None}
        return preprocess, forward, postprocess

    # ---------------------------------------------------------------- calling
    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        """Run on one input or a list of inputs (see the class docstring); windows are batched `batch_size` at a time."""
        kwargs.pop("num_workers", None)
        check_pipeline_arguments(batch_size=batch_size)
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        preprocess = {**self._preprocess_params, **preprocess}
        forward = {**self._forward_params, **forward, "batch_size": int(batch_size or self._batch_size or 1)}
        postprocess = {**self._postprocess_params, **postprocess}
        single = not isinstance(inputs, (list, tuple, types.GeneratorType))
        if single and not preprocess.get("return_evidence"):
            streamed = self._stream(inputs, preprocess, forward, postprocess)
            if streamed is not None:
                return streamed
        items = [inputs] if single else list(inputs)
        if not items:
            raise ValueError("no inputs given")
        prepared = self._preprocess_arrays(items, **preprocess) if len(items) > 1 else None
        if prepared is None:
            prepared = []
            for i, item in enumerate(items):
                try:
                    prepared.append(self.preprocess(item, **preprocess))
                except ValueError as error:  # name the offending input of a batch
                    if single:
                        raise
                    raise ValueError(f"input {i}: {error}") from error
        outputs = self.forward(self._concat(prepared), **forward)
        check_finite_scores(outputs["scores"])  # never a label from NaN/Inf scores
        results, offset = [], 0
        for part in prepared:
            n = len(part["prompt_ids"])
            window_outputs = {key: value[offset : offset + n] for key, value in outputs.items()}
            results.append(self.postprocess({**part, **window_outputs}, **postprocess))
            offset += n
        return results[0] if single else results

    def _stream(self, item, preprocess: dict, forward: dict, postprocess: dict):
        """One continuous recording (a file, an MNE Raw or a 2-D array) in bounded memory: windows are computed
        `STREAM_WINDOWS` at a time by `E2LLMFeatureExtractor.iter_windows` (equal to the whole-signal chain), run
        through the model and reduced to their per-window results before the next piece is read. None for inputs
        it does not take (Epochs), which the batch path handles.

        A model with evidence prompts needs each window's band power against a reference: the `baseline` recording,
        `baseline_power`, or else the mean over this recording's windows, taken in a first pass over it."""
        options = {k: v for k, v in preprocess.items() if k not in ("apply_filters", "return_evidence", "baseline")}
        eeg, signal_args, question, prompt, baseline_power = self._resolve(item, **options)
        if _is_mne_like(eeg) and hasattr(eeg, "events"):
            return None
        apply_filters, baseline = preprocess.get("apply_filters", True), preprocess.get("baseline")
        evidence = self.processor.evidence_spread is not None
        extractor = self._evidence_processor().feature_extractor if evidence else self.processor.feature_extractor

        def chunks():
            return extractor.iter_windows(eeg, **signal_args, apply_filters=apply_filters,
                                          windows_per_chunk=STREAM_WINDOWS, return_tensors="pt")

        reference, powers = None, None
        if evidence and baseline is None and baseline_power is None:
            to_uv = extractor.output_unit_uv or 1.0
            powers = [band_power_db(c["eeg_values"].numpy().astype(np.float64) * to_uv, extractor.sampling_rate)
                      for c in chunks()]
            if sum(len(p) for p in powers) < 2:
                return None  # a single window: the batch path names what is missing
            reference = np.concatenate(powers).mean(axis=0)  # (n_bands, n_channels) dB: small even for a day
        prompt_ids = None if evidence else self._single_window_prompt(question, prompt)
        windows, montage = [], None
        for k, chunk in enumerate(chunks()):
            n = len(chunk["eeg_values"])
            inputs = {name: chunk[name] for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
            if montage is None:
                montage = self._montage(inputs["eeg_channel_ids"][0], inputs["eeg_channel_mask"][0])
            rows = [prompt_ids] * n
            if evidence:
                raw = inputs["eeg_values"]
                inputs["eeg_values"] = normalized_like_extractor(raw, inputs["eeg_channel_mask"],
                                                                 self.processor.feature_extractor.normalization)
                if powers is not None:  # band power and reference from the first pass
                    power = powers[k]
                    names = [extractor.electrode_names[i] for i in inputs["eeg_channel_ids"][0].tolist()]
                else:  # the baseline's reference, computed with the first chunk
                    power, names, given = self._evidence_power(raw, inputs["eeg_channel_ids"], eeg, signal_args,
                                                               apply_filters, baseline if reference is None else None,
                                                               baseline_power if reference is None else None)
                    reference = given if reference is None else reference
                rows = [self._single_window_prompt(question, prompt, line)
                        for line in self.processor.evidence_statements(power, names, reference)]
            outputs = self.forward({**inputs, "prompt_ids": rows}, **forward)
            check_finite_scores(outputs["scores"])
            windows += self._window_results({**outputs, "starts": chunk["eeg_window_starts"].tolist(),
                                             "montage": montage}, **postprocess)
        result = windows[0] if len(windows) == 1 else self._aggregate(windows)
        if montage.warning is not None:
            warnings.warn(montage.warning, stacklevel=3)
            result["warning"] = montage.warning
        return result

    def _single_window_prompt(self, question, prompt, evidence: str | None = None) -> torch.Tensor:
        """The token ids of the prompt for one window: `<|eeg|>` expanded to `num_eeg_tokens` placeholders, and the
        window's `evidence` line after the user's text."""
        replacement = self.processor.eeg_token * self.processor.num_eeg_tokens
        expanded, _ = self.processor.get_text_with_eeg_replacements([self._prompt(question, prompt, evidence)],
                                                                    [replacement])
        return torch.tensor(self.processor.tokenizer(expanded)["input_ids"][0], dtype=torch.long)

    @staticmethod
    def _concat(prepared: list[dict]) -> dict:
        merged = {key: torch.cat([p[key] for p in prepared]) for key in ("eeg_values", "eeg_channel_ids",
                                                                          "eeg_channel_mask")}
        merged["prompt_ids"] = [row for p in prepared for row in p["prompt_ids"]]
        return merged

    # ---------------------------------------------------------------- preprocess
    def _conversation(self, question: str | None, prompt, evidence: str | None = None) -> list[dict]:
        if prompt is not None and question is not None:
            raise ValueError("pass either question (text) or prompt (a conversation), not both")
        if isinstance(prompt, str):
            question, prompt = prompt, None
        if prompt is None:
            prompt = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": question or DEFAULT_QUESTION}]}]
        parts = [p for m in prompt if not isinstance(m.get("content"), str) for p in m["content"]]
        if sum(p.get("type") == "eeg" for p in parts) != 1:
            raise ValueError("a prompt conversation must hold exactly one {'type': 'eeg'} content part")
        if evidence is None:
            return list(prompt)
        # as in training (`build_instructions`): the measured evidence on a new line after the user's text
        return [{**m, "content": [*m["content"], {"type": "text", "text": "\n" + evidence}]}
                if not isinstance(m.get("content"), str) and any(p.get("type") == "eeg" for p in m["content"]) else m
                for m in prompt]

    @staticmethod
    def _resolve(item, sampling_rate=None, channel_names=None, units=None, question=None, prompt=None,
                 baseline_power=None):
        """`(eeg, signal arguments, question, prompt, baseline_power)` of one input; a dict's own entries win."""
        if isinstance(item, Mapping):
            unknown = set(item) - {"eeg", "sampling_rate", "channel_names", "units", "question", "prompt",
                                   "baseline_power"}
            if "eeg" not in item or unknown:
                raise ValueError(f"a dict input needs an 'eeg' entry and may add sampling_rate, channel_names, units, "
                                 f"question, prompt, baseline_power; got keys {sorted(item)}")
            sampling_rate = item.get("sampling_rate", sampling_rate)
            channel_names = item.get("channel_names", channel_names)
            units = item.get("units", units)
            question, prompt = item.get("question", question), item.get("prompt", prompt)
            baseline_power = item.get("baseline_power", baseline_power)
            item = item["eeg"]
        if isinstance(item, (str, os.PathLike)):
            item = _read_path(item)
        if not (_is_mne_like(item) or isinstance(item, (np.ndarray, torch.Tensor))):
            raise ValueError(f"unsupported EEG input of type {type(item).__name__}: pass an array, an MNE Raw/Epochs, "
                             "a path to a recording, or a dict with 'eeg'")
        if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim != 2:
            raise ValueError(f"an array input must be one recording (n_channels, n_times), got shape {tuple(item.shape)}"
                             "; pass a list of recordings for a batch")
        signal_args = dict(sampling_rate=sampling_rate, channel_names=channel_names, units=units)
        return item, signal_args, question, prompt, baseline_power

    def _prompt(self, question, prompt, evidence: str | None = None) -> str:
        return self.processor.apply_chat_template(self._conversation(question, prompt, evidence),
                                                  add_generation_prompt=True)

    def preprocess(self, item, sampling_rate=None, channel_names=None, units=None, question=None, prompt=None,
                   apply_filters=True, return_evidence=False, baseline=None, baseline_power=None):
        item, signal_args, question, prompt, baseline_power = self._resolve(
            item, sampling_rate, channel_names, units, question, prompt, baseline_power)
        epochs = _is_mne_like(item) and hasattr(item, "events")
        evidence_prompts = self.processor.evidence_spread is not None
        # One chain run: for band power, unnormalised windows, normalised here as the extractor would.
        processor = self._evidence_processor() if return_evidence or evidence_prompts else self.processor
        encoded = processor(text=[self._prompt(question, prompt)] * (len(item) if epochs else 1), eeg=item,
                            **signal_args, apply_filters=apply_filters, return_tensors="pt", return_metadata=True)
        out = {**self._window_inputs(encoded, 0, len(encoded["input_ids"])), "epochs": epochs}
        if return_evidence or evidence_prompts:
            raw = out["eeg_values"]
            out["eeg_values"] = normalized_like_extractor(raw, out["eeg_channel_mask"],
                                                          self.processor.feature_extractor.normalization)
            power, names, reference = self._evidence_power(raw, out["eeg_channel_ids"], item, signal_args,
                                                           apply_filters, baseline, baseline_power)
            if return_evidence:
                out["relative_db"] = relative_band_power(power, None) if reference is None else power - reference
                out["channel_names"] = names
            if evidence_prompts:
                if reference is None:
                    raise ValueError(
                        "this model's prompts state each window's band power relative to a baseline, and the input "
                        "is a single window: pass baseline= (a recording of the same person and montage, e.g. at "
                        "rest), baseline_power= (its mean band power), or a recording of several windows (their "
                        "mean is then the baseline)")
                statements = self.processor.evidence_statements(power, names, reference)
                out["prompt_ids"] = [self._single_window_prompt(question, prompt, line) for line in statements]
        return out

    def _preprocess_arrays(self, items, sampling_rate=None, channel_names=None, units=None, question=None,
                           prompt=None, apply_filters=True, return_evidence=False, baseline=None,
                           baseline_power=None) -> list[dict] | None:
        """`preprocess` of several array inputs in one processor call (the feature extractor stacks recordings of
        one shape); None when the inputs do not allow it (evidence, MNE objects, paths, mixed rates or units, or an
        input error, which the one-by-one path then names)."""
        if return_evidence or self.processor.evidence_spread is not None:
            return None
        try:
            resolved = [self._resolve(item, sampling_rate, channel_names, units, question, prompt)[:4]
                        for item in items]
            if not all(isinstance(eeg, (np.ndarray, torch.Tensor)) for eeg, *_ in resolved):
                return None
            signals = {(signal["sampling_rate"], signal["units"]) for _, signal, *_ in resolved}
            if len(signals) != 1:
                return None
            (rate, unit), = signals
            encoded = self.processor(text=[self._prompt(q, p) for *_, q, p in resolved], eeg=[r[0] for r in resolved],
                                     sampling_rate=rate, channel_names=[r[1]["channel_names"] for r in resolved],
                                     units=unit, apply_filters=apply_filters, return_tensors="pt",
                                     return_metadata=True)
        except ValueError:
            return None
        return [{**self._window_inputs(encoded, i, i + 1), "epochs": False} for i in range(len(items))]

    def _window_inputs(self, encoded, first: int, stop: int) -> dict:
        """Model inputs, one prompt row per window, window starts and montage of the recordings `first:stop` of a
        processor output."""
        windows = encoded["eeg_num_windows"].tolist()
        lo, hi = sum(windows[:first]), sum(windows[:stop])
        out = {name: encoded[name][lo:hi] for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
        out["items"] = windows[first:stop]  # windows per recording (per epoch of Epochs)
        out["prompt_ids"] = self._window_prompts(encoded["input_ids"][first:stop],
                                                 encoded["attention_mask"][first:stop], out["items"])
        out["starts"] = encoded["eeg_window_starts"][lo:hi].tolist()
        out["montage"] = self._montage(out["eeg_channel_ids"][0], out["eeg_channel_mask"][0])
        return out

    def _montage(self, channel_ids: torch.Tensor, channel_mask: torch.Tensor):
        """Which rationale claims the recorded channels can support, and a warning when most electrodes are missing."""
        present = channel_ids[channel_mask.bool()].tolist()
        return montage_support([self.processor.feature_extractor.electrode_names[i] for i in present],
                               getattr(self.model.config.eeg_config, "channel_names", None))

    def _window_prompts(self, input_ids, attention_mask, windows: list[int]) -> list[torch.Tensor]:
        """One prompt row per window: its recording's prompt with the `<|eeg|>` run cut to one window's tokens."""
        k = self.processor.num_eeg_tokens
        rows = []
        for ids, mask, n_windows in zip(input_ids, attention_mask, windows):
            ids = ids[mask.bool()]
            first = int(torch.nonzero(ids == self.processor.eeg_token_id)[0, 0])
            rows += [torch.cat([ids[: first + k], ids[first + n_windows * k :]])] * n_windows
        return rows

    def _evidence_processor(self):
        """A processor whose feature extractor skips the normalisation (same chain otherwise)."""
        if self._unnormalized_processor is None:
            extractor = copy.deepcopy(self.processor.feature_extractor)
            extractor.normalization = "none"
            self._unnormalized_processor = copy.copy(self.processor)
            self._unnormalized_processor.feature_extractor = extractor
        return self._unnormalized_processor

    def _evidence_power(self, raw, channel_ids, item, signal_args, apply_filters, baseline, baseline_power):
        """`(power, channel names, reference)`: band power (dB) of each window `(n_windows, n_bands, n_channels)` and
        the reference `(n_bands, n_channels)` it is relative to: the mean over the `baseline` recording's windows,
        `baseline_power` (given over the input's channels), or the mean over the input's windows when it has
        several; None for a single window without a baseline."""
        if baseline is not None and baseline_power is not None:
            raise ValueError("pass either baseline (a recording) or baseline_power (its band power), not both")
        extractor = self._evidence_processor().feature_extractor
        to_uv = extractor.output_unit_uv or 1.0  # an encoder taking millivolts (EEGPT) gets windows in mV
        power = band_power_db(raw.numpy().astype(np.float64) * to_uv, extractor.sampling_rate)
        names = [extractor.electrode_names[i] for i in channel_ids[0].tolist()]
        reference = power.mean(axis=0) if len(power) > 1 else None
        if baseline is not None:
            if isinstance(baseline, (str, os.PathLike)):
                baseline = _read_path(baseline)
            base = extractor(baseline, **signal_args, apply_filters=apply_filters, return_tensors="np")
            if not np.array_equal(base["eeg_channel_ids"][0], channel_ids[0].numpy()):
                raise ValueError("the baseline recording must have the same channels as the input")
            reference = band_power_db(base["eeg_values"].astype(np.float64) * to_uv, extractor.sampling_rate).mean(0)
        elif baseline_power is not None:
            input_names = signal_args.get("channel_names") or getattr(item, "ch_names", None)
            reference = baseline_on_channels(baseline_power, input_names, names)
        return power, names, reference

    # ---------------------------------------------------------------- forward
    def _forward(self, model_inputs, generate_kwargs=None, batch_size=1, return_rationale=True, return_evidence=False,
                 attribution_steps=16):
        generated, scores, attributions = [], [], []
        pad = self.processor.tokenizer.pad_token_id
        for start in range(0, len(model_inputs["prompt_ids"]), batch_size):
            chunk = slice(start, start + batch_size)
            eeg = {name: model_inputs[name][chunk].to(self.device) for name in
                   ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
            prompts = [row.to(self.device) for row in model_inputs["prompt_ids"][chunk]]
            features = self.model.get_eeg_features(**eeg)  # the one encoder pass of these windows
            if return_rationale:
                input_ids, attention_mask = left_pad(prompts, pad)
                kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}))
                sequences = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                                eeg_features=features, **kwargs)
                answers = [label_prompt_ids(self.processor.tokenizer, row)
                           for row in sequences[:, input_ids.shape[1] :].tolist()]
            else:
                answers = [label_prompt_ids(self.processor.tokenizer, None)] * len(prompts)
            rows = [torch.cat([p, torch.tensor(ids, dtype=torch.long, device=self.device)])
                    for p, (_, ids) in zip(prompts, answers)]
            input_ids, attention_mask = left_pad(rows, pad)
            probs = score_candidates(self.model, input_ids, attention_mask, self.candidate_ids,
                                     eeg_features=features).softmax(-1)
            generated.extend(text for text, _ in answers)
            scores.append(probs.float().cpu())
            if return_evidence:
                targets = [self.candidate_ids[t] for t in probs.argmax(-1).tolist()]
                attributions.append(integrated_gradients(self.model, input_ids, attention_mask, targets, **eeg,
                                                         steps=attribution_steps))
        out = {"generated_text": generated, "scores": torch.cat(scores)}
        if return_evidence:
            out["attribution"] = torch.cat(attributions)
        return out

    @staticmethod
    def scoring_prefix(answer: str, with_rationale: bool = True) -> str:
        """The assistant text that label scoring continues: the answer up to its label line, then `Emotion:`
        (the text of the tokens `e2llm.scoring_e2llm.label_prompt_ids` gives)."""
        if not with_rationale:
            return f"{LABEL_KEY}:"
        match = LABEL_LINE.search(answer)
        body = answer[: match.start()] if match else answer.rstrip() + "\n"
        return f"{body}{LABEL_KEY}:"

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs, extra_fields=None, return_evidence=False, evidence_dir=None):
        windows = self._window_results(model_outputs, extra_fields, return_evidence, evidence_dir)
        groups, offset = [], 0
        for n in model_outputs["items"]:
            groups.append(windows[offset : offset + n])
            offset += n
        results = [group[0] if len(group) == 1 else self._aggregate(group) for group in groups]
        warning = model_outputs["montage"].warning
        if warning is not None:
            warnings.warn(warning, stacklevel=2)
            for result in results:
                result["warning"] = warning
        return results if model_outputs["epochs"] else results[0]

    def _window_results(self, model_outputs, extra_fields=None, return_evidence=False, evidence_dir=None) -> list:
        """One result dict per window of `model_outputs` (label, scores, rationale, start/end, evidence)."""
        window_seconds = self.processor.feature_extractor.window_seconds
        windows = []
        for i, (text, probs) in enumerate(zip(model_outputs["generated_text"], model_outputs["scores"])):
            scores = dict(zip(self.label_names, probs.tolist()))
            if text:
                parsed = parse_answer(text, self.label_names, extra_fields)
                label, rationale, fields = parsed.label, parsed.rationale, parsed.fields
                # never report claims about regions without channels, or an asymmetry without a frontal pair
                rationale, _ = remove_unsupported_claims(rationale, model_outputs["montage"])
            else:  # label scoring only
                label, rationale, fields = self.label_names[int(probs.argmax())], None, {}
            start = float(model_outputs["starts"][i])
            window = {"label": label, "scores": scores, "rationale": rationale, "generated_text": text,
                      "parseable": label is not None, "start": start, "end": start + window_seconds}
            if extra_fields:
                window["fields"] = fields
            if return_evidence:
                window["evidence"] = evidence_map(
                    model_outputs["relative_db"][i], model_outputs["attribution"][i].numpy(),
                    model_outputs["channel_names"], self.processor.feature_extractor.sampling_rate, start,
                    evidence_dir, stem=f"evidence_{id(model_outputs)}_{i:04d}",
                )
            windows.append(window)
        return windows

    def _aggregate(self, windows: list[dict]) -> dict:
        mean = {name: float(np.mean([w["scores"][name] for w in windows])) for name in self.label_names}
        votes = Counter(w["label"] for w in windows if w["label"] is not None)
        label = None
        if votes:
            top = max(votes.values())
            label = max((name for name, c in votes.items() if c == top), key=lambda name: mean[name])
        return {"label": label, "scores": mean, "votes": dict(votes),
                "n_unparseable": sum(w["label"] is None for w in windows), "windows": windows}


__all__ = ["DEFAULT_QUESTION", "EVIDENCE_BANDS", "EEGEmotionPipeline", "band_power_db"]
