"""The `eeg-emotion` pipeline: EEG in any common form -> emotion label, probabilities and rationale per window.

Importing `e2llm` registers it, so `pipeline("eeg-emotion", model=folder)` works. It needs only torch,
transformers, numpy and scipy (MNE is imported when a file path is given or evidence pictures are asked
for), so it can travel with a model as remote code.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import types
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, Pipeline

from .answers import LABEL_KEY, parse_answer
from .recording_file_e2llm import open_recording

DEFAULT_QUESTION = "Which emotion does this EEG show? Explain your reasoning from the signal, then answer."
# Frequency bands of the evidence maps, [low, high) Hz (the SEED family's five bands).
EVIDENCE_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 14.0), "beta": (14.0, 31.0), "gamma": (31.0, 49.0),
}
_LABEL_LINE = re.compile(rf"^[ \t]*\**{LABEL_KEY}\**[ \t]*[:=]", re.IGNORECASE | re.MULTILINE)


def _is_mne_like(obj) -> bool:
    return hasattr(obj, "get_data") and hasattr(obj, "info") and hasattr(obj, "ch_names")


def _read_path(path) -> object:
    """Any recording MNE reads (EDF, BDF, FIF, BrainVision, EEGLAB, ...) as an `EEGFile` of its EEG channels: the
    reading path `e2llm predict` uses too (non-EEG channels dropped by name, damaged files refused)."""
    return open_recording(path)


def band_power_db(windows: np.ndarray, sfreq: float) -> np.ndarray:
    """Welch band power in dB (10 log10 µV²): `(n, n_channels, n_times)` -> `(n, n_bands, n_channels)`."""
    from scipy.signal import welch

    freqs, psd = welch(windows, fs=sfreq, nperseg=min(windows.shape[-1], int(2 * sfreq)), axis=-1)
    masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in EVIDENCE_BANDS.values()], axis=-1)
    power = (psd @ masks.astype(np.float64)) * (freqs[1] - freqs[0])
    return 10 * np.log10(np.maximum(np.swapaxes(power, -1, -2), 1e-12))


class EEGEmotionPipeline(Pipeline):
    r"""
    Emotion recognition from EEG with an E2LLM: per window, a generated rationale and label, and a probability per
    label from label scoring (the log-likelihood of each label string after the rationale, in one forward pass).

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
    `evidence_dir`; needs MNE and matplotlib), `baseline` (a recording whose band power the evidence is relative to).

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

    def _sanitize_parameters(self, sampling_rate=None, channel_names=None, units=None, question=None, prompt=None,
                             apply_filters=None, return_rationale=None, extra_fields=None, max_new_tokens=None,
                             generate_kwargs=None, return_evidence=None, evidence_dir=None, baseline=None,
                             attribution_steps=None, **kwargs):
        preprocess = {k: v for k, v in dict(sampling_rate=sampling_rate, channel_names=channel_names, units=units,
                                            question=question, prompt=prompt, apply_filters=apply_filters,
                                            return_evidence=return_evidence, baseline=baseline).items() if v is not None}
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
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        preprocess = {**self._preprocess_params, **preprocess}
        forward = {**self._forward_params, **forward, "batch_size": int(batch_size or self._batch_size or 1)}
        postprocess = {**self._postprocess_params, **postprocess}
        single = not isinstance(inputs, (list, tuple, types.GeneratorType))
        items = [inputs] if single else list(inputs)
        if not items:
            raise ValueError("no inputs given")
        prepared = []
        for i, item in enumerate(items):
            try:
                prepared.append(self.preprocess(item, **preprocess))
            except ValueError as error:  # name the offending input of a batch
                if single:
                    raise
                raise ValueError(f"input {i}: {error}") from error
        outputs = self.forward(self._concat(prepared), **forward)
        results, offset = [], 0
        for part in prepared:
            n = len(part["prompts"])
            window_outputs = {key: value[offset : offset + n] for key, value in outputs.items()}
            results.append(self.postprocess({**part, **window_outputs}, **postprocess))
            offset += n
        return results[0] if single else results

    @staticmethod
    def _concat(prepared: list[dict]) -> dict:
        merged = {key: torch.cat([p[key] for p in prepared]) for key in ("eeg_values", "eeg_channel_ids",
                                                                          "eeg_channel_mask")}
        merged["prompts"] = [text for p in prepared for text in p["prompts"]]
        return merged

    # ---------------------------------------------------------------- preprocess
    def _conversation(self, question: str | None, prompt) -> list[dict]:
        if prompt is not None and question is not None:
            raise ValueError("pass either question (text) or prompt (a conversation), not both")
        if isinstance(prompt, str):
            question, prompt = prompt, None
        if prompt is None:
            return [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": question or DEFAULT_QUESTION}]}]
        parts = [p for m in prompt if not isinstance(m.get("content"), str) for p in m["content"]]
        if sum(p.get("type") == "eeg" for p in parts) != 1:
            raise ValueError("a prompt conversation must hold exactly one {'type': 'eeg'} content part")
        return list(prompt)

    def preprocess(self, item, sampling_rate=None, channel_names=None, units=None, question=None, prompt=None,
                   apply_filters=True, return_evidence=False, baseline=None):
        if isinstance(item, Mapping):
            unknown = set(item) - {"eeg", "sampling_rate", "channel_names", "units", "question", "prompt"}
            if "eeg" not in item or unknown:
                raise ValueError(f"a dict input needs an 'eeg' entry and may add sampling_rate, channel_names, units, "
                                 f"question, prompt; got keys {sorted(item)}")
            sampling_rate = item.get("sampling_rate", sampling_rate)
            channel_names = item.get("channel_names", channel_names)
            units = item.get("units", units)
            question, prompt = item.get("question", question), item.get("prompt", prompt)
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
        features = self.processor.feature_extractor(item, **signal_args, apply_filters=apply_filters,
                                                    return_tensors="pt")
        rendered = self.processor.apply_chat_template(self._conversation(question, prompt), add_generation_prompt=True)
        text = rendered.replace(self.processor.eeg_token, self.processor.eeg_token * self.processor.num_eeg_tokens)
        n_windows = int(features["eeg_values"].shape[0])
        out = {name: features[name] for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
        out.update(prompts=[text] * n_windows, starts=features["eeg_window_starts"].tolist(),
                   items=features["eeg_num_windows"].tolist(), epochs=_is_mne_like(item) and hasattr(item, "events"))
        if return_evidence:
            out["power_db"], out["relative_db"], out["channel_names"] = self._evidence_power(
                item, features, signal_args, apply_filters, baseline
            )
        return out

    def _evidence_power(self, item, features, signal_args, apply_filters, baseline):
        """Band power (dB) of each window and relative to the baseline: `(n_windows, n_bands, n_channels)` each."""
        raw_fe = copy.deepcopy(self.processor.feature_extractor)
        raw_fe.normalization = "none"
        windows = raw_fe(item, **signal_args, apply_filters=apply_filters, return_tensors="np")["eeg_values"]
        power = band_power_db(windows.astype(np.float64), raw_fe.sampling_rate)
        if baseline is not None:
            if isinstance(baseline, (str, os.PathLike)):
                baseline = _read_path(baseline)
            base = raw_fe(baseline, **signal_args, apply_filters=apply_filters, return_tensors="np")
            if not np.array_equal(base["eeg_channel_ids"][0], features["eeg_channel_ids"][0].numpy()):
                raise ValueError("the baseline recording must have the same channels as the input")
            reference = band_power_db(base["eeg_values"].astype(np.float64), raw_fe.sampling_rate).mean(axis=0)
        elif len(power) > 1:  # the recording's own mean over windows
            reference = power.mean(axis=0)
        else:  # one window, no baseline: relative to the mean over channels
            reference = power[0].mean(axis=-1, keepdims=True)
        names = [raw_fe.electrode_names[i] for i in features["eeg_channel_ids"][0].tolist()]
        return power, power - reference, names

    # ---------------------------------------------------------------- forward
    def _tokenize(self, texts: list[str]) -> dict:
        # left padding: generation continues every row from its last position
        return self.processor.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt",
                                        add_special_tokens=False)

    def _forward(self, model_inputs, generate_kwargs=None, batch_size=1, return_rationale=True, return_evidence=False,
                 attribution_steps=16):
        prompts = model_inputs["prompts"]
        generated, scores, attributions = [], [], []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            eeg = {name: model_inputs[name][chunk].to(self.device) for name in
                   ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
            texts = prompts[chunk]
            if return_rationale:
                encoded = self._tokenize(texts).to(self.device)
                kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}))
                sequences = self.model.generate(**encoded, **eeg, **kwargs)
                answers = self.processor.tokenizer.batch_decode(
                    sequences[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
                )
            else:
                answers = [""] * len(texts)
            scoring = [text + self.scoring_prefix(answer, return_rationale) for text, answer in zip(texts, answers)]
            encoded = self._tokenize(scoring).to(self.device)
            probs = self.model.score_emotions(encoded["input_ids"], encoded["attention_mask"], self.candidate_ids, **eeg)
            generated.extend(answers)
            scores.append(probs.float().cpu())
            if return_evidence:
                attributions.append(self._integrated_gradients(encoded, eeg, probs.argmax(-1), attribution_steps))
        out = {"generated_text": generated, "scores": torch.cat(scores)}
        if return_evidence:
            out["attribution"] = torch.cat(attributions)
        return out

    @staticmethod
    def scoring_prefix(answer: str, with_rationale: bool = True) -> str:
        """The assistant text that label scoring continues: the answer up to its label line, then `Emotion:`."""
        if not with_rationale:
            return f"{LABEL_KEY}:"
        match = _LABEL_LINE.search(answer)
        body = answer[: match.start()] if match else answer.rstrip() + "\n"
        return f"{body}{LABEL_KEY}:"

    def _integrated_gradients(self, encoded, eeg, targets, steps: int) -> torch.Tensor:
        """Integrated gradients (zero baseline, `steps` Riemann steps) of the target label's log-likelihood with
        respect to the encoder input, summed over time: `(n_windows, n_channels)`."""
        result = []
        cand = [torch.tensor(self.candidate_ids[t], device=self.device) for t in targets.tolist()]
        alphas = (torch.arange(steps, device=self.device, dtype=torch.float32) + 0.5) / steps
        with torch.enable_grad():
            for i, ids in enumerate(cand):
                x = eeg["eeg_values"][i : i + 1]
                path = (alphas[:, None, None] * x).requires_grad_(True)  # (steps, n_channels, n_times)
                keep = encoded["attention_mask"][i].bool()  # drop the left padding of this window's prompt
                row = torch.cat([encoded["input_ids"][i][keep], ids])[None].expand(steps, -1)
                mask = torch.ones_like(row)
                n = len(ids)
                logits = self.model(input_ids=row, attention_mask=mask, eeg_values=path, logits_to_keep=n + 1,
                                    eeg_channel_ids=eeg["eeg_channel_ids"][i : i + 1].expand(steps, -1),
                                    eeg_channel_mask=eeg["eeg_channel_mask"][i : i + 1].expand(steps, -1)).logits
                logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[None, :, None].expand(steps, -1, 1))
                (grad,) = torch.autograd.grad(logp.sum(), path)
                result.append((x[0] * grad.mean(0)).sum(-1).detach().float().cpu())
        return torch.stack(result)

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs, extra_fields=None, return_evidence=False, evidence_dir=None):
        window_seconds = self.processor.feature_extractor.window_seconds
        windows = []
        for i, (text, probs) in enumerate(zip(model_outputs["generated_text"], model_outputs["scores"])):
            scores = dict(zip(self.label_names, probs.tolist()))
            if text:
                parsed = parse_answer(text, self.label_names, extra_fields)
                label, rationale, fields = parsed.label, parsed.rationale, parsed.fields
            else:  # label scoring only
                label, rationale, fields = self.label_names[int(probs.argmax())], None, {}
            start = float(model_outputs["starts"][i])
            window = {"label": label, "scores": scores, "rationale": rationale, "generated_text": text,
                      "parseable": label is not None, "start": start, "end": start + window_seconds}
            if extra_fields:
                window["fields"] = fields
            if return_evidence:
                window["evidence"] = self._evidence(model_outputs, i, evidence_dir)
            windows.append(window)
        groups, offset = [], 0
        for n in model_outputs["items"]:
            groups.append(windows[offset : offset + n])
            offset += n
        results = [group[0] if len(group) == 1 else self._aggregate(group) for group in groups]
        return results if model_outputs["epochs"] else results[0]

    def _aggregate(self, windows: list[dict]) -> dict:
        mean = {name: float(np.mean([w["scores"][name] for w in windows])) for name in self.label_names}
        votes = Counter(w["label"] for w in windows if w["label"] is not None)
        label = None
        if votes:
            top = max(votes.values())
            label = max((name for name, c in votes.items() if c == top), key=lambda name: mean[name])
        return {"label": label, "scores": mean, "votes": dict(votes),
                "n_unparseable": sum(w["label"] is None for w in windows), "windows": windows}

    def _evidence(self, outputs, i: int, evidence_dir) -> dict:
        """PNG of scalp maps: band power relative to the baseline (dB) per band and the input attribution."""
        try:  # optional: inside try so remote-code loading (check_imports) does not require them
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
            import mne
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("evidence maps need MNE-Python and matplotlib: pip install mne matplotlib") from error

        names = outputs["channel_names"]
        relative = outputs["relative_db"][i]
        attribution = outputs["attribution"][i][: len(names)].numpy()
        info = mne.create_info(names, self.processor.feature_extractor.sampling_rate, "eeg")
        builtin = mne.channels.get_builtin_montages()
        info.set_montage("colin27_1005" if "colin27_1005" in builtin else "standard_1005", on_missing="ignore")
        placed = np.array([not np.isnan(ch["loc"][:3]).any() and np.any(ch["loc"][:3]) for ch in info["chs"]])
        if placed.sum() < 3:
            raise ValueError(f"evidence maps need at least 3 channels with 10-05 positions, got {names}")
        info = mne.pick_info(info, np.flatnonzero(placed))
        fig, axes = plt.subplots(1, len(EVIDENCE_BANDS) + 1, figsize=(3 * (len(EVIDENCE_BANDS) + 1), 3.2))
        limit = float(np.abs(relative[:, placed]).max()) or 1.0
        for ax, band, values in zip(axes, EVIDENCE_BANDS, relative):
            mne.viz.plot_topomap(values[placed], info, axes=ax, show=False, cmap="RdBu_r", vlim=(-limit, limit),
                                 res=32)
            ax.set_title(f"{band} (dB vs baseline)", fontsize=9)
        att_limit = float(np.abs(attribution[placed]).max()) or 1.0
        mne.viz.plot_topomap(attribution[placed], info, axes=axes[-1], show=False, cmap="PuOr_r",
                             vlim=(-att_limit, att_limit), res=32)
        axes[-1].set_title("integrated gradients", fontsize=9)
        start = outputs["starts"][i]
        fig.suptitle(f"window at {start:.1f} s", fontsize=10)
        folder = Path(evidence_dir) if evidence_dir is not None else Path(tempfile.mkdtemp(prefix="e2llm-evidence-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"evidence_{os.getpid()}_{id(outputs)}_{i:04d}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return {
            "png": str(path),
            "relative_band_power_db": {band: dict(zip(names, map(float, row))) for band, row in zip(EVIDENCE_BANDS, relative)},
            "attribution": dict(zip(names, map(float, attribution))),
        }


__all__ = ["DEFAULT_QUESTION", "EVIDENCE_BANDS", "EEGEmotionPipeline", "band_power_db"]
