"""Label scoring alone: one prefix pass + cache (`score_labels` now) against the per-label copies of c847536, on a
Qwen2.5-0.5B-shaped language model with random weights, on CPU.

    python bench/bench_label_scoring.py [--layers 4] [--batch 8] [--rationale-tokens 60] [--repeats 3] [--threads N]

The language model has Qwen2.5-0.5B's shape (hidden 896, MLP 4864, 14 heads, 2 KV heads, vocabulary 151936, tied
embeddings) with `--layers` of its 24 layers (both methods scale with the layer count alike; the embedding and head
are full size), the tiny EEG encoder, 4 EEG tokens per window. Each of `--batch` prompts (one window each) holds a
question of 20-30 tokens, a `--rationale-tokens` rationale and `Emotion:`, left-padded; the seven labels are
single tokens but for `--two-token-labels` of them. Both methods get the same precomputed EEG features (each would
encode the EEG once), so this times the scoring itself. They run alternately `--repeats` times after a warm-up;
prints one JSON object with the median times, the speed-up and the largest probability difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_scoring import score_labels_per_label_copies  # noqa: E402

from e2llm import E2LLMConfig, E2LLMForConditionalGeneration  # noqa: E402
from e2llm.assembly import TINY_EEG_CONFIG  # noqa: E402

QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "rope_theta": 1000000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-6}
EEG_TOKEN_ID, PAD_ID = 151665, 151643


def build(layers: int) -> E2LLMForConditionalGeneration:
    torch.manual_seed(0)
    config = E2LLMConfig(text_config={**QWEN25_05B, "num_hidden_layers": layers, "pad_token_id": PAD_ID},
                         eeg_config=TINY_EEG_CONFIG, eeg_token_id=EEG_TOKEN_ID, num_eeg_tokens=4,
                         tie_word_embeddings=True)
    return E2LLMForConditionalGeneration(config).eval()


def inputs(batch: int, rationale_tokens: int, seed: int = 0) -> dict:
    """Left-padded prompts `<question> <|eeg|>x4 <rationale> Emotion:` and one EEG window each (24 channels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        question = rng.integers(1000, 150000, size=int(rng.integers(20, 31))).tolist()
        rationale = rng.integers(1000, 150000, size=rationale_tokens).tolist()
        rows.append(question + [EEG_TOKEN_ID] * 4 + rationale + [36, 25, 100])
    width = max(map(len, rows))
    ids = torch.full((batch, width), PAD_ID)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
    eeg = torch.from_numpy(rng.standard_normal((batch, 24, 800)).astype(np.float32))
    return {"input_ids": ids, "attention_mask": mask, "eeg_values": eeg,
            "eeg_channel_ids": torch.arange(1, 25).expand(batch, -1).clone(),
            "eeg_channel_mask": torch.ones(batch, 24, dtype=torch.long)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rationale-tokens", type=int, default=60)
    parser.add_argument("--two-token-labels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args.layers)
    batch = inputs(args.batch, args.rationale_tokens)
    candidates = [[140000 + i] if i >= args.two_token_labels else [140000 + i, 141000 + i] for i in range(7)]
    with torch.no_grad():
        features = model.get_eeg_features(batch.pop("eeg_values"), batch.pop("eeg_channel_ids"),
                                          batch.pop("eeg_channel_mask"))
    batch["eeg_features"] = features

    methods = {
        "per_label_copies_c847536": lambda: score_labels_per_label_copies(model, candidate_ids=candidates, **batch),
        "prefix_cache_now": lambda: model.score_labels(candidate_ids=candidates, **batch),
    }
    results = {name: fn() for name, fn in methods.items()}  # warm-up, and the values compared
    times = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(v) for name, v in times.items()}
    old, new = results["per_label_copies_c847536"], results["prefix_cache_now"]
    out = {
        "device": "cpu", "torch_threads": torch.get_num_threads(),
        "model": f"Qwen2.5-0.5B shape, {args.layers} of 24 layers, random weights",
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "batch": args.batch, "prompt_tokens": int(batch["input_ids"].shape[1]),
        "rationale_tokens": args.rationale_tokens, "labels": 7, "two_token_labels": args.two_token_labels,
        "repeats": args.repeats, "seconds": times, "median_seconds": median,
        "speedup": median["per_label_copies_c847536"] / median["prefix_cache_now"],
        "max_abs_prob_diff": float((old.softmax(-1) - new.softmax(-1)).abs().max()),
        "max_abs_loglik_diff": float((old - new).abs().max()),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
