"""The `eeg-emotion` pipeline with its language model served by vLLM.

Everything but the language model runs as in the Transformers pipeline (the same class, the same preprocessing,
prompts, answer parsing, claims and aggregation): the EEG encoder and projector turn each window into EEG tokens,
which are scattered into the prompt's input embeddings (`E2LLMModel.embed_inputs`, as in `forward`). vLLM then
writes the answer from those `prompt_embeds` and scores every label from the log-probabilities of the label tokens
after the answer's `Emotion:` line (`logprob_token_ids`), so label, probabilities and rationale are those of the
Transformers path on the same weights (greedy).

    >>> from e2llm.serving import load_serving_pipeline
    >>> pipe = load_serving_pipeline("runs/stage3/merged")  # doctest: +SKIP
    >>> pipe(eeg, sampling_rate=200, channel_names=names, units="uV")  # doctest: +SKIP
    >>> pipe.close()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig, AutoProcessor

from e2llm import E2LLMForConditionalGeneration, EEGEmotionPipeline
from e2llm.generation_e2llm import Answers
from e2llm.scoring_e2llm import label_prompt_ids

from .engine import EngineSettings, VLLMLanguageModel
from .language_model_export import export_language_model, fingerprint
from .sampling import sampling_kwargs


class VLLMEEGEmotionPipeline(EEGEmotionPipeline):
    """`EEGEmotionPipeline` whose answers and label scores come from a vLLM engine (`engine`, a
    `VLLMLanguageModel` serving the same model's exported language model); `model` needs only the EEG encoder,
    projector and input embeddings (see `load_front_end`). Takes the same inputs and arguments, except
    `return_evidence` (integrated gradients need the language model's gradients: use the Transformers pipeline) and
    generation settings vLLM cannot reproduce (beam search, repetition penalties), which are refused by name."""

    def __init__(self, *args, engine: VLLMLanguageModel, **kwargs):
        super().__init__(*args, **kwargs)
        self.engine = engine
        weight = self.model.get_input_embeddings().weight
        tokens = sorted({int(t) for candidate in self.candidate_ids for t in candidate})
        self.candidate_embeds = {t: weight[t].detach().cpu() for t in tokens}
        guidance = float(getattr(self.model.config, "label_guidance_weight", 0.0) or 0.0)
        if getattr(self.model.config, "label_decision", "language_model") == "emotion_head":
            warnings.warn("this model's emotion head decides its written labels (label_decision 'emotion_head') in "
                          "the Transformers pipeline; the vLLM engine writes the language model's labels alone "
                          "(results' label_guidance is None)", stacklevel=2)
        elif guidance > 0:
            warnings.warn(f"this model writes its labels with its emotion head's guidance (label_guidance_weight "
                          f"{guidance:g}) in the Transformers pipeline; the vLLM engine writes the language model's "
                          f"labels alone (results' label_guidance is None)", stacklevel=2)

    def _sanitize_parameters(self, **kwargs):
        if kwargs.get("return_evidence"):
            raise ValueError("return_evidence needs the language model's gradients, which the vLLM engine does not "
                             "give: use the Transformers pipeline (pipeline('eeg-emotion', model=...)) for evidence")
        if kwargs.get("constrain_claims"):
            raise ValueError("constrain_claims=True completes claims from measurement one generation step at a time, "
                             "which the vLLM engine does not do: use the Transformers pipeline for it")
        if kwargs.get("guide_labels"):
            raise ValueError("guide_labels=True adds the emotion head's probabilities to the label's tokens one "
                             "generation step at a time, which the vLLM engine does not do: use the Transformers "
                             "pipeline for it")
        # the engine writes the model's own claims and labels: results say so (`claim_constraint`, `label_guidance`
        # None)
        return super()._sanitize_parameters(**{**kwargs, "constrain_claims": False, "guide_labels": False})

    def _generation_settings(self, generate_kwargs: dict | None) -> dict:
        """The generation settings `generate()` would use in this call (only those differing from the defaults)."""
        settings = self._get_set_generation_params(self._prepare_generate_kwargs(dict(generate_kwargs or {})))
        settings.pop("generation_config", None)  # already merged in by _get_set_generation_params
        return settings

    def _prompt_embeds(self, rows: list[torch.Tensor], features: torch.Tensor) -> list[torch.Tensor]:
        """Each row's input embeddings with its window's EEG tokens scattered in: `(seq_len, hidden)` CPU tensors."""
        embed = self.model.model.embed_inputs
        return [embed(input_ids=row[None].to(self.device), eeg_features=features[i : i + 1])[0][0].cpu()
                for i, row in enumerate(rows)]

    def _answer_and_score(self, prompts: list[torch.Tensor], eeg_features: torch.Tensor, generate_kwargs,
                          return_rationale: bool) -> Answers:
        """The language-model step of a batch (`EEGEmotionPipeline._answer_and_score`) on the engine: each window's
        answer written from its prompt embeddings, then every label scored after the answer's ``Emotion:`` from
        the engine's log-probabilities (the scoring rows' own embeddings, never the generation's cache)."""
        tokenizer = self.processor.tokenizer
        if return_rationale:
            settings = self._generation_settings(generate_kwargs)
            sampling = [sampling_kwargs(settings, len(row)) for row in prompts]
            written = self.engine.generate(self._prompt_embeds(prompts, eeg_features), sampling)
            answers = [label_prompt_ids(tokenizer, ids) for ids in written]
        else:
            answers = [label_prompt_ids(tokenizer, None)] * len(prompts)
        tails = [list(ids) for _, ids in answers]
        rows = [torch.cat([row.cpu(), torch.tensor(ids, dtype=torch.long)]) for row, ids in zip(prompts, tails)]
        log_likelihoods = self.engine.score(self._prompt_embeds(rows, eeg_features), self.candidate_embeds,
                                            self.candidate_ids)
        return Answers([text for text, _ in answers], log_likelihoods, [False] * len(prompts), tails)

    def close(self) -> None:
        """Shut the engine down (its processes and memory)."""
        self.engine.shutdown()


class E2LLMFrontEnd(E2LLMForConditionalGeneration):
    """An `E2LLMForConditionalGeneration` built without decoder layers (`num_hidden_layers=0`) from a whole E2LLM
    folder: the saved decoder layers have no place in it and are left unread on purpose (vLLM serves them). Every
    other check of strict loading stands: a missing, misshapen or non-finite encoder, projector, embedding or head
    tensor, a damaged file or a tensor the whole model would not have either is refused as usual."""

    _keys_to_ignore_on_load_unexpected = [r"^model\.language_model\.layers\.\d+\."]


def load_front_end(model_dir: str | os.PathLike, device: str = "cpu", dtype: torch.dtype | str = "auto"):
    """The E2LLM of `model_dir` without its decoder layers (an `E2LLMFrontEnd`): the EEG encoder, the projector and
    the input embeddings (all the serving pipeline runs outside vLLM), without reading the decoder's weights."""
    config = AutoConfig.from_pretrained(model_dir)
    config.text_config.num_hidden_layers = 0
    if getattr(config.text_config, "layer_types", None) is not None:
        config.text_config.layer_types = []
    model = E2LLMFrontEnd.from_pretrained(model_dir, config=config, dtype=dtype)
    return model.to(device).eval()


def default_lm_dir(model_dir: Path) -> Path:
    """Where the exported language model of `model_dir` is kept: `$E2LLM_CACHE` (default `~/.cache/e2llm`)
    `/serve/<folder name>-<fingerprint of its weights>`."""
    root = Path(os.environ.get("E2LLM_CACHE", Path.home() / ".cache" / "e2llm"))
    return root / "serve" / f"{model_dir.resolve().name}-{fingerprint(model_dir)}"


def load_serving_pipeline(model_dir: str | os.PathLike, lm_dir: str | os.PathLike | None = None,
                          settings: EngineSettings | None = None, device: str | None = None) -> VLLMEEGEmotionPipeline:
    """A `VLLMEEGEmotionPipeline` for the merged E2LLM folder `model_dir`: its language model exported to `lm_dir`
    (default: `default_lm_dir`; reused while the weights are unchanged), a vLLM engine on it, and the EEG front end
    on `device` (CUDA when there is one). Call `close()` when done."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a folder: pass a merged E2LLM folder (save_pretrained output)")
    lm_dir = export_language_model(model_dir, lm_dir or default_lm_dir(model_dir))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = VLLMLanguageModel(str(lm_dir), settings)  # first: on a GPU it sizes its cache from the free memory
    try:
        front_end = load_front_end(model_dir, device=device, dtype=engine.dtype)
        processor = AutoProcessor.from_pretrained(model_dir)
        return VLLMEEGEmotionPipeline(model=front_end, processor=processor, engine=engine, device=device)
    except BaseException:
        engine.shutdown()
        raise


__all__ = ["E2LLMFrontEnd", "VLLMEEGEmotionPipeline", "default_lm_dir", "load_front_end", "load_serving_pipeline"]
