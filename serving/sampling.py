"""From Transformers' generation settings and e2llm's label candidates to vLLM requests, and back (no vLLM import).

Generation: the settings a `generate()` call of the `eeg-emotion` pipeline would use (the model's generation config,
the pipeline's defaults, the call's arguments) become `vllm.SamplingParams` keyword arguments; a setting vLLM would
treat differently is refused by name rather than silently changed.

Label scoring: each label candidate is a short token sequence after the answer's `Emotion:` prefix. Its
log-likelihood is the sum, over its tokens, of the log-probability of that token after the prefix and the
candidate's earlier tokens. The candidates form a prefix tree; each tree node (prefix + a candidate's first k
tokens) is one vLLM request of one token whose `logprob_token_ids` are the next tokens of the candidates through that
node. vLLM computes these log-probabilities from the raw logits over the whole vocabulary, as `score_candidates`
does in the Transformers path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# generate() settings that map onto vLLM's sampling parameters
SAMPLING_SETTINGS = ("do_sample", "temperature", "top_k", "top_p", "min_p")
# settings that need no mapping: token ids vLLM reads from the exported folder or that only shape HF's outputs
NEUTRAL_SETTINGS = ("pad_token_id", "bos_token_id", "use_cache", "return_dict_in_generate", "output_scores",
                    "output_logits", "transformers_version", "cache_implementation", "compile_config",
                    "disable_compile", "generation_kwargs")
SUPPORTED_SETTINGS = ("max_new_tokens", "max_length", "min_new_tokens", "eos_token_id", *SAMPLING_SETTINGS,
                      *NEUTRAL_SETTINGS)
# GenerationConfig defaults that leave greedy / plain sampling as vLLM does it
NEUTRAL_VALUES = {"num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0, "length_penalty": 1.0,
                  "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "diversity_penalty": 0.0,
                  "num_beam_groups": 1, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                  "early_stopping": False, "renormalize_logits": False, "remove_invalid_values": False,
                  "output_attentions": False, "output_hidden_states": False, "max_time": None, "stop_strings": None,
                  "bad_words_ids": None, "force_words_ids": None, "sequence_bias": None, "suppress_tokens": None,
                  "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                  "exponential_decay_length_penalty": None, "guidance_scale": None, "watermarking_config": None,
                  "assistant_model": None, "prompt_lookup_num_tokens": None, "top_h": None, "min_length": 0,
                  "constraints": None, "low_memory": None, "token_healing": False, "dola_layers": None}


def sampling_kwargs(settings: Mapping, prompt_length: int) -> dict:
    """`vllm.SamplingParams` keyword arguments for one prompt of `prompt_length` tokens.

    `settings`: the generation settings that differ from Transformers' defaults (the model's
    `generation_config.to_diff_dict()`, the pipeline's defaults and the call's arguments on top). Greedy unless
    `do_sample`; stops at the settings' `eos_token_id`(s); `max_new_tokens` (or `max_length` minus the prompt) and
    `min_new_tokens` bound the answer. Raises `ValueError` naming any setting the vLLM path cannot honour.
    """
    unsupported = sorted(key for key, value in settings.items()
                         if key not in SUPPORTED_SETTINGS and not key.startswith("_") and value is not None
                         and not (key in NEUTRAL_VALUES and value == NEUTRAL_VALUES[key]))
    if unsupported:
        raise ValueError(f"the vLLM serving path does not support the generation settings {unsupported} (greedy or "
                         "plain sampling only): leave them unset, or use the Transformers pipeline")
    if settings.get("max_new_tokens") is not None:
        max_tokens = int(settings["max_new_tokens"])
    elif settings.get("max_length") is not None:
        max_tokens = int(settings["max_length"]) - prompt_length
    else:
        raise ValueError("set max_new_tokens: the answer's length bound")
    if max_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_tokens}")
    eos = settings.get("eos_token_id")
    stop = [int(eos)] if isinstance(eos, int) else [int(t) for t in eos or ()]
    kwargs = {"max_tokens": max_tokens, "min_tokens": int(settings.get("min_new_tokens") or 0),
              "stop_token_ids": stop, "ignore_eos": not stop, "detokenize": False, "temperature": 0.0}
    if settings.get("do_sample"):
        kwargs.update(temperature=float(settings.get("temperature") or 1.0), top_p=float(settings.get("top_p") or 1.0),
                      top_k=int(settings.get("top_k") or 0), min_p=float(settings.get("min_p") or 0.0))
    return kwargs


def scoring_nodes(candidate_ids: Sequence[Sequence[int]]) -> list[tuple[tuple[int, ...], list[int]]]:
    """The prefix-tree nodes of the candidates: `(tokens after the scoring prefix, next tokens to score there)`,
    root first. One vLLM request of one token per node scores every candidate."""
    if not candidate_ids or any(len(c) == 0 for c in candidate_ids):
        raise ValueError("every label candidate needs at least one token")
    nodes: dict[tuple[int, ...], list[int]] = {}
    for candidate in candidate_ids:
        for k, token in enumerate(candidate):
            following = nodes.setdefault(tuple(int(t) for t in candidate[:k]), [])
            if int(token) not in following:
                following.append(int(token))
    return sorted(nodes.items(), key=lambda item: len(item[0]))


def candidate_log_likelihoods(candidate_ids: Sequence[Sequence[int]],
                              node_logprobs: Mapping[tuple[int, ...], Mapping[int, float]]) -> list[float]:
    """Summed log-probability of each candidate from the log-probabilities its tree nodes returned."""
    totals = []
    for candidate in candidate_ids:
        total = 0.0
        for k, token in enumerate(candidate):
            total += float(node_logprobs[tuple(int(t) for t in candidate[:k])][int(token)])
        totals.append(total)
    return totals


__all__ = ["candidate_log_likelihoods", "sampling_kwargs", "scoring_nodes"]
