"""Benchmark: EEG encoder + projector vs language-model prefill, Qwen2.5-0.5B-sized, on CPU (prints JSON).

    python bench/bench_forward.py                  # Qwen2.5-0.5B shapes, random weights (no download)
    python bench/bench_forward.py --threads 1    # on a shared machine: avoids thread contention skewing small ops

One prompt with one 4-s window of 62-channel EEG (SEED montage), built with the processor; the language model is
built from a Qwen2.5-0.5B config with random weights. Times are medians over `--repeats` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from e2llm import SEED_CHANNELS, assemble_e2llm, build_offline_tokenizer

# Qwen/Qwen2.5-0.5B-Instruct's config.json (architecture fields only).
QWEN25_05B = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
    "vocab_size": 151936,
}


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = build_offline_tokenizer()
    model, processor = assemble_e2llm(tokenizer, text_config=QWEN25_05B)  # default EEG encoder
    # Qwen's vocabulary size (the offline tokenizer's ids are a subset), so the lm_head has its real width.
    model.resize_token_embeddings(QWEN25_05B["vocab_size"], mean_resizing=False)
    model.eval()
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": (
        "Which emotion does this EEG show? Explain your reasoning from the band powers, then answer.")}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eeg = 20 * np.random.default_rng(0).standard_normal((62, 4 * 200))
    inputs = processor(text=prompt, eeg=eeg, sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV",
                       apply_filters=False, return_tensors="pt")
    eeg_inputs = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}

    with torch.inference_mode():
        embeds, _ = model.model.embed_inputs(inputs["input_ids"], None, **eeg_inputs)

        def encoder_and_projector():
            model.model.get_eeg_features(**eeg_inputs)

        def prefill():
            hidden = model.model.language_model(
                inputs_embeds=embeds, attention_mask=inputs["attention_mask"], use_cache=True
            ).last_hidden_state
            model.lm_head(hidden[:, -1:])

        eeg_seconds = _median_seconds(encoder_and_projector, args.repeats)
        prefill_seconds = _median_seconds(prefill, args.repeats)
    n_text = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel() * (
        not model.config.tie_word_embeddings
    )
    print(json.dumps({
        "language_model": "Qwen2.5-0.5B shapes (random weights)",
        "language_model_parameters": n_text,
        "eeg_encoder_parameters": sum(p.numel() for p in model.model.eeg_encoder.parameters()),
        "projector_parameters": sum(p.numel() for p in model.model.projector.parameters()),
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "eeg_channels_x_patches": int(eeg_inputs["eeg_values"].shape[1]) * model.config.eeg_config.num_patches,
        "encoder_projector_seconds": round(eeg_seconds, 4),
        "prefill_seconds": round(prefill_seconds, 4),
        "encoder_share_of_prefill": round(eeg_seconds / prefill_seconds, 3),
        "torch_threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
