"""The `eeg-emotion` pipeline: EEG in any common form -> emotion label, probabilities, rationale and measured evidence
per window.

Importing `e2llm` registers it, so `pipeline("eeg-emotion", model=folder)` works. It needs only torch,
transformers, numpy and scipy (MNE is imported when a file path is given or evidence pictures are asked for), so it
can travel with a model as remote code.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig, LogitsProcessorList
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines.pt_utils import PipelineChunkIterator, PipelineIterator, PipelinePackIterator

from .claim_constraints_e2llm import MeasuredClaimsLogitsProcessor
from .evidence_e2llm import integrated_gradients
from .generation_e2llm import Answers, generate_and_score, generation_defaults, score_without_rationale
from .label_guidance_e2llm import HeadGuidedLabelsLogitsProcessor
from .label_sources_e2llm import check_label_source, source_probabilities
from .pipeline_chunks_e2llm import window_chunks
from .pipeline_results_e2llm import WindowOutput, build_results, measured_items
from .prompts_e2llm import DEFAULT_QUESTION, PromptBuilder
from .scoring_e2llm import LABEL_LINE, left_pad
from .validation_e2llm import check_finite_scores, check_pipeline_arguments, check_user_text

_PREPROCESS = ("sampling_rate", "channel_names", "units", "channel_map", "montage", "line_freq", "question",
               "prompt", "apply_filters", "baseline", "baseline_power")
_FORWARD = ("return_rationale", "return_evidence", "attribution_steps", "constrain_claims", "guide_labels",
            "extra_fields")
_POSTPROCESS = ("extra_fields", "return_evidence", "evidence_dir")


class EEGEmotionPipeline(ChunkPipeline):
    r"""
    Emotion recognition from EEG with an E2LLM: per window, a generated rationale and label, a probability per label
    (label scoring: the likelihood of each label string after the rationale), and the evidence measured in that window.

    Built on Transformers' `ChunkPipeline`, as speech recognition handles long audio: `preprocess` turns one input into
    window chunks from the one signal chain (`e2llm.pipeline_chunks_e2llm`; a long recording streams in bounded
    memory), `_forward` encodes each batch of windows once and generates and scores labels on token ids (the label
    distribution comes from the generation's own logits and cache, `e2llm.generation_e2llm`), `postprocess` links
    claims to measured evidence and aggregates (`e2llm.pipeline_results_e2llm`). `batch_size` windows go through the
    model at a time, windows of several inputs together.

    Inputs: a `(n_channels, n_times)` array or tensor (with `sampling_rate`, `channel_names` and `units`), an MNE
    `Raw`, an MNE `Epochs` (one result per epoch), a path to any MNE-readable recording, a dict
    `{"eeg": ..., <any call argument below>}`, or a list of these (a list of results).

    Output per recording of one window: `{"label", "scores", "rationale", "generated_text", "parseable", "start",
    "end", "evidence", "claims", "removed_claims", "removed_numbers", "removed_support", "abstention_reason",
    "label_support", "claim_constraint", "label_guidance", "channels", "filter"}`. `label` is parsed from the generated answer, None when it cannot be
    parsed (`parseable` False): never guessed. A window that is not emotion EEG (noise, flat, line noise only, muscle artefact, a
    spectrum unlike EEG's, or most channels unusable) gets no label: `answer` is "insufficient evidence" and
    `abstention_reason` says why (None otherwise; `e2llm.window_verdicts_e2llm`). `label_support` gives, for the
    label, each cited item's support over the most confusable alternative and how typical its value is of the label,
    under the class signatures the model ships (its `reason` says why there is none, e.g. a model without them). `scores` maps each label to
    its probability. `rationale` is the answer's reasoning with every number rendered from measurement: each claim is
    linked to the window's measured item (`claims`, with whether its direction and strength words agree), claims
    without one are removed (`removed_claims`), as are numbers outside claims and a label sentence (``The evidence
    favours X over Y``) whose X is not the answered label or whose Y is (`removed_support` says which and why). Where
    the window's reference is known before the answer is written (a model with the evidence in its prompts, or a given
    baseline), each claim is kept to the measured items as the model writes it (`e2llm.claim_constraints_e2llm`: an
    item not cited yet, after the label sentence one that favours that label under the class signatures the model
    ships, with its measured direction, strength and region); the model still chooses the label and which of those
    items to cite, and `claim_constraint` counts the window's constrained claims and those where the model's own next
    word was not allowed (`overridden`; None where the constraint did not apply). A model whose
    `config.label_guidance_weight` is above 0 writes its labels with the emotion head's probabilities added at the
    label's tokens, and one whose `config.label_decision` is ``"emotion_head"`` writes the head's label
    (`e2llm.label_guidance_e2llm`); `label_guidance` gives the weight, whether the head decided and whether it changed
    a label the language model would have written (None where it did not apply). `evidence`
    holds the reference the window was measured against and every measured item (`e2llm.measured_evidence_e2llm`). `channels` says which
    channels were used, which dropped and why; `filter` what filter the input got. A recording of several windows
    gives `{"label", "scores", "votes", "n_unparseable", "n_refused", "n_abstained", "windows": [...], "channels",
    "filter"}` (with `answer` and `abstention_reason` when every window abstained). A channel masked in every window
    (flat over the whole input, or clipped or stuck in each window) is listed in `channels["dropped"]` with why.

    Call arguments: `sampling_rate`, `channel_names`, `units` (arrays; `units` also corrects a `Raw` whose values are
    not volts), `channel_map` (`{input name: 10-05 name}`), `montage` (an MNE standard montage name placing a cap whose
    labels are not 10-05 names by position), `line_freq` (mains frequency to notch; a file's own where
    MNE knows it, else the extractor's 50 Hz), `question` (or `prompt`, a chat with one `{"type": "eeg"}` part),
    `apply_filters` (False for windows already band-passed), `return_rationale` (False: label scoring only),
    `constrain_claims` (False: the model's claims as it writes them, flagged where they disagree with measurement),
    `guide_labels` (False: the language model's labels alone, without the head's guidance),
    `max_new_tokens` and other generation parameters (or `generate_kwargs`), `extra_fields` (`{"Valence": [...]}`
    to parse), `return_evidence` (scalp maps as PNG in `evidence_dir`, with integrated-gradient attributions over
    `attribution_steps` steps; needs MNE and matplotlib), `baseline` (a recording evidence is measured against) or
    `baseline_power` (its band power in dB, `(n_bands, n_channels)` over the input's channels), `batch_size`.

    Without `baseline`/`baseline_power`, evidence is measured against the input's own mean when it has at least 10
    windows, else against the reference the model ships (`E2LLMProcessor.evidence_statistics`); a model trained with
    the evidence in its prompts refuses an input for which there is neither, saying what is needed.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import pipeline
    >>> from e2llm import SEED_CHANNELS, build_tiny_e2llm
    >>> model, processor = build_tiny_e2llm()
    >>> pipe = pipeline("eeg-emotion", model=model, processor=processor)
    >>> eeg = 20 * np.random.default_rng(0).standard_normal((62, 800))
    >>> out = pipe(eeg, sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV", max_new_tokens=8)
    >>> round(sum(out["scores"].values()), 4), out["channels"]["placement"]
    (1.0, '10-05 names')
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
        self.prompts = PromptBuilder(self.processor)

    def _sanitize_parameters(self, max_new_tokens=None, generate_kwargs=None, **kwargs):
        check_pipeline_arguments(**{k: kwargs.get(k) for k in ("apply_filters", "return_rationale",
                                                                "return_evidence", "attribution_steps",
                                                                "constrain_claims", "guide_labels")},
                                 max_new_tokens=max_new_tokens)
        check_user_text(kwargs.get("question"), kwargs.get("prompt"), getattr(self.processor, "tokenizer", None))
        generate = dict(generate_kwargs or {})
        generate.update({k: kwargs.pop(k) for k in list(kwargs) if k in vars(GenerationConfig())})
        if max_new_tokens is not None:
            if "max_new_tokens" in generate:
                raise ValueError("max_new_tokens is given twice: as an argument and in generate_kwargs")
            generate["max_new_tokens"] = max_new_tokens
        unknown = set(kwargs) - set(_PREPROCESS) - set(_FORWARD) - set(_POSTPROCESS)
        if unknown:
            raise ValueError(f"unknown eeg-emotion pipeline arguments: {sorted(unknown)}")
        pick = lambda names: {k: kwargs[k] for k in names if kwargs.get(k) is not None}  # noqa: E731
        forward = pick(_FORWARD)
        if generate:
            forward["generate_kwargs"] = generate
        return pick(_PREPROCESS), forward, pick(_POSTPROCESS)

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params,
                     postprocess_params):
        """`ChunkPipeline.get_iterator` with two changes: windows are collated as a list (`_forward` pads their
        channels and prompts itself; Transformers' `pad_collate_fn` would pad channels on the tokenizer's side and
        refuses a feature extractor padded on the other side), and a failing input of several is named by its
        position in the error."""
        check_pipeline_arguments(batch_size=batch_size)
        several = not isinstance(inputs, list) or len(inputs) > 1
        dataset = PipelineChunkIterator(((i, item, several) for i, item in enumerate(inputs)),
                                        self._numbered_preprocess, preprocess_params)
        loader = DataLoader(dataset, num_workers=0, batch_size=batch_size, collate_fn=list)
        model_iterator = PipelinePackIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        model_iterator.loader_batch_size = batch_size  # unpack `_forward`'s lists at batch 1 too
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _numbered_preprocess(self, numbered, **params):
        index, item, several = numbered
        try:
            yield from self.preprocess(item, **params)
        except ValueError as error:
            if not several:
                raise
            raise ValueError(f"input {index}: {error}") from error

    def preprocess(self, inputs, **params):
        """Window chunks of one input (a generator; see `e2llm.pipeline_chunks_e2llm`)."""
        yield from window_chunks(self, inputs, **params)

    # ---------------------------------------------------------------- forward
    def _forward(self, model_inputs: list[dict], generate_kwargs=None, return_rationale: bool = True,
                 return_evidence: bool = False, attribution_steps: int = 16, constrain_claims: bool = True,
                 guide_labels: bool = True, extra_fields=None):
        """One batch of windows: encode once, generate (claims completed from measurement unless
        `constrain_claims` is False, labels guided by the head as the model's config says unless `guide_labels` is
        False; `extra_fields`' keys are the answer's other lines) and score (or score only), attributions if asked."""
        check_label_source(self.model.config)  # a config changed after loading gets the loader's error, not a silent path
        eeg = self._stack(model_inputs)
        prompts = [torch.as_tensor(c["prompt_ids"], dtype=torch.long, device=self.device) for c in model_inputs]
        items = measured_items(self.processor.evidence_statistics, model_inputs)
        constraint = None
        if return_rationale and constrain_claims and any(i is not None for i in items):
            constraint = MeasuredClaimsLogitsProcessor(
                self.processor.tokenizer, items, max(len(p) for p in prompts),
                (self.processor.evidence_statistics or {}).get("signatures"), self.label_names)
            generate_kwargs = _with_processor(generate_kwargs, constraint)
        # the one encoder pass of these windows: the projected EEG tokens and the emotion head's logits
        features, head_logits = self.model.get_eeg_features(**eeg, return_emotion_logits=True)
        field_keys = list(extra_fields) if isinstance(extra_fields, Mapping) else []  # else postprocess's error
        guidance = self._label_guidance(head_logits, max(len(p) for p in prompts), field_keys) \
            if return_rationale and guide_labels else None
        if guidance is not None:
            generate_kwargs = _with_processor(generate_kwargs, guidance)
        answers = self._answer_and_score(prompts, features, generate_kwargs, return_rationale)
        # each source's temperature-scaled probabilities; `scores` are those of config.label_probabilities
        sources = source_probabilities(self.model.config, answers.scores, head_logits)
        for probs in sources.values():
            if probs is not None:
                check_finite_scores(probs)  # never a label or a confidence from NaN/Inf scores
        language_model = sources["language_model"]
        attribution = self._attribution(prompts, answers.tails, language_model, eeg, attribution_steps) \
            if return_evidence else [None] * len(prompts)
        head = [None] * len(prompts) if sources["emotion_head"] is None else sources["emotion_head"].cpu().numpy()
        constrained = _constraint_counts(constraint, items, answers.texts)
        guided = [None] * len(prompts) if guidance is None or guidance.calls == 0 else \
            [{"weight": guidance.weight, "head_decides": guidance.decides, "changed": changed, "line_held": held}
             for changed, held in zip(guidance.changed, guidance.line_held)]
        windows = [WindowOutput(text, lm, c["start"], c["item"], c["band_power"], c["eeg_channel_mask"] == 1,
                                c["context"], a, reused, c["unusable"], c["refused"], c.get("signal_statistics"), h,
                                i, k, g)
                   for c, text, lm, h, a, reused, i, k, g in zip(model_inputs, answers.texts,
                                                                 language_model.cpu().numpy(), head, attribution,
                                                                 answers.from_generation, items, constrained, guided)]
        return {"window": windows, "is_last": [c["is_last"] for c in model_inputs]}

    def _label_guidance(self, head_logits: torch.Tensor | None, prompt_length: int,
                        field_keys=()) -> HeadGuidedLabelsLogitsProcessor | None:
        """The head's guidance of the written labels (`config.label_guidance_weight`; the head's label itself with
        `config.label_decision` ``"emotion_head"``, the answer held to its format with `field_keys` the keys of its
        other lines), None at weight 0 when the language model decides."""
        weight = float(getattr(self.model.config, "label_guidance_weight", 0.0) or 0.0)
        decides = getattr(self.model.config, "label_decision", "language_model") == "emotion_head"
        if (weight == 0 and not decides) or head_logits is None:
            return None
        head = source_probabilities(self.model.config, None, head_logits)["emotion_head"]
        return HeadGuidedLabelsLogitsProcessor(self.processor.tokenizer, head, self.label_names, weight,
                                               prompt_length, decides=decides, field_keys=field_keys)

    def _answer_and_score(self, prompts: list[torch.Tensor], eeg_features: torch.Tensor, generate_kwargs,
                          return_rationale: bool) -> Answers:
        """The language-model step of a batch: prompts (1-D token ids, one window each) and their projected EEG
        `(n, num_eeg_tokens, hidden)` -> `Answers` (generated texts, label log-likelihoods, the scoring rows' tails).
        A serving backend overrides only this step."""
        pad = self.processor.tokenizer.pad_token_id
        if not return_rationale:
            return score_without_rationale(self.model, self.processor.tokenizer, prompts, eeg_features,
                                           self.candidate_ids, pad)
        kwargs = generation_defaults(self.device, self._prepare_generate_kwargs(dict(generate_kwargs or {})))
        return generate_and_score(self.model, self.processor.tokenizer, prompts, eeg_features, self.candidate_ids,
                                  pad, kwargs)

    def _stack(self, chunks: list[dict]) -> dict:
        """EEG inputs of a batch of windows, channels padded to the widest (id 0, mask 0)."""
        width = max(len(c["eeg_channel_ids"]) for c in chunks)
        values = np.zeros((len(chunks), width, chunks[0]["eeg_values"].shape[-1]), dtype=np.float32)
        ids = np.zeros((len(chunks), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, chunk in enumerate(chunks):
            n = len(chunk["eeg_channel_ids"])
            values[i, :n], ids[i, :n], mask[i, :n] = chunk["eeg_values"], chunk["eeg_channel_ids"], \
                chunk["eeg_channel_mask"]
        return {"eeg_values": torch.from_numpy(values).to(self.device),
                "eeg_channel_ids": torch.from_numpy(ids).to(self.device),
                "eeg_channel_mask": torch.from_numpy(mask).to(self.device)}

    def _attribution(self, prompts, tails, probs, eeg, steps: int) -> list[np.ndarray]:
        """Integrated gradients of each window's most probable label over its EEG input (the label-scoring rows)."""
        rows = [torch.cat([p, torch.as_tensor(t, dtype=torch.long, device=p.device)]) for p, t in zip(prompts, tails)]
        input_ids, attention_mask = left_pad(rows, self.processor.tokenizer.pad_token_id)
        targets = [self.candidate_ids[t] for t in probs.argmax(-1).tolist()]
        return list(integrated_gradients(self.model, input_ids, attention_mask, targets, **eeg, steps=steps).numpy())

    @staticmethod
    def scoring_prefix(answer: str, with_rationale: bool = True) -> str:
        """The assistant text that label scoring continues: the answer up to its label line, then `Emotion:`
        (the text of the tokens `e2llm.scoring_e2llm.label_prompt_ids` gives)."""
        if not with_rationale:
            return "Emotion:"
        match = LABEL_LINE.search(answer)
        body = answer[: match.start()] if match else answer.rstrip() + "\n"
        return f"{body}Emotion:"

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs: list[dict], extra_fields=None, return_evidence: bool = False,
                    evidence_dir=None):
        """Results of one input from its windows' outputs (see `e2llm.pipeline_results_e2llm`)."""
        windows = [output["window"] for output in model_outputs]
        return build_results(self, windows, extra_fields, return_evidence, evidence_dir)


def _with_processor(generate_kwargs: dict | None, processor) -> dict:
    """`generate_kwargs` with `processor` run after the caller's logits processors."""
    kwargs = dict(generate_kwargs or {})
    kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), processor])
    return kwargs


def _constraint_counts(constraint: MeasuredClaimsLogitsProcessor | None, items: list,
                       texts: list[str]) -> list[dict | None]:
    """Per window ``{"claims", "overridden"}`` of the claim constraint over the claims its answer finishes, None where
    it did not run (no measured items, `constrain_claims=False`, no rationale, or a backend that does not apply
    logits processors)."""
    if constraint is None or constraint.calls == 0:
        return [None] * len(items)
    counts = [constraint.finished(window, text) for window, text in enumerate(texts)]
    return [None if i is None else {"claims": n, "overridden": k} for i, (n, k) in zip(items, counts)]


__all__ = ["DEFAULT_QUESTION", "EEGEmotionPipeline"]
