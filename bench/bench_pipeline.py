"""Benchmark of the eeg-emotion pipeline against the same work done by hand, on CPU, with a tiny E2LLM.

    python bench/bench_pipeline.py [--recordings 16] [--max-new-tokens 16] [--repeats 5] [--threads N]

"By hand" is what a user would write without the pipeline, on the same recordings, in the same batches:
`processor(...)` (feature extraction + prompt tokenisation), `model.generate`, decoding, a second
tokenisation of the prompt + rationale up to ``Emotion:``, `model.score_emotions` and `parse_answer`.
Pipeline and hand-written runs alternate in a random order each round; the median (and minimum) time of each
is reported, plus the pipeline's
throughput (windows per second) at batch 8 against batch 1. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from transformers import pipeline

from e2llm import SEED_CHANNELS, build_tiny_e2llm, parse_answer
from e2llm.pipeline_e2llm import DEFAULT_QUESTION, EEGEmotionPipeline

SFREQ = 200.0


def recordings(n: int, seconds: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [20 * rng.standard_normal((len(SEED_CHANNELS), int(seconds * SFREQ))) for _ in range(n)]


def by_hand(model, processor, eegs, batch_size: int, max_new_tokens: int) -> list[str | None]:
    """The pipeline's work written out with the processor and the model."""
    labels = model.config.label_names
    candidates = processor.label_candidate_ids(labels)
    processor.tokenizer.padding_side = "left"
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": DEFAULT_QUESTION}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    predictions = []
    with torch.no_grad():
        for start in range(0, len(eegs), batch_size):
            chunk = eegs[start : start + batch_size]
            inputs = processor(text=[prompt] * len(chunk), eeg=chunk, sampling_rate=SFREQ,
                               channel_names=list(SEED_CHANNELS), units="uV", return_tensors="pt")
            eeg = {k: inputs[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
            sequences = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **eeg,
                                       max_new_tokens=max_new_tokens, do_sample=False)
            answers = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            expanded = processor.tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=False)
            texts = [p.replace(processor.tokenizer.pad_token, "") + EEGEmotionPipeline.scoring_prefix(a)
                     for p, a in zip(expanded, answers)]
            scored = processor.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
            model.score_emotions(scored["input_ids"], scored["attention_mask"], candidates, **eeg)
            predictions += [parse_answer(a, labels).label for a in answers]
    return predictions


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = build_tiny_e2llm()
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device="cpu")
    eegs = recordings(args.recordings)
    signal = {"sampling_rate": SFREQ, "channel_names": list(SEED_CHANNELS), "units": "uV"}
    tokens = {"max_new_tokens": args.max_new_tokens, "do_sample": False}

    def run_pipe(batch):
        return lambda: pipe(eegs, batch_size=batch, **signal, **tokens)

    def run_hand(batch):
        return lambda: by_hand(model, processor, eegs, batch, args.max_new_tokens)

    runs = {"pipeline_b8": run_pipe(8), "by_hand_b8": run_hand(8), "pipeline_b1": run_pipe(1)}
    for fn in runs.values():  # warm-up: filter design, first-call allocations
        fn()
    times = {name: [] for name in runs}
    order = list(runs)
    rng = np.random.default_rng(0)
    for _ in range(args.repeats):  # a fresh random order each round, so load bursts hit every variant alike
        for name in rng.permutation(order):
            times[name].append(timed(runs[name]))
    median = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    n = args.recordings
    result = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "recordings": n,
        "window_seconds": 4.0,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "median_seconds": median,
        "min_seconds": best,
        "pipeline_over_by_hand": median["pipeline_b8"] / median["by_hand_b8"],
        "pipeline_over_by_hand_min": best["pipeline_b8"] / best["by_hand_b8"],
        "throughput_windows_per_s": {"batch_8": n / median["pipeline_b8"], "batch_1": n / median["pipeline_b1"]},
        "batch8_speedup_over_batch1": median["pipeline_b1"] / median["pipeline_b8"],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
