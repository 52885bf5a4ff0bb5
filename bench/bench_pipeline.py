"""Benchmark of the eeg-emotion pipeline against the same work done by hand, on CPU, with a tiny E2LLM.

    python bench/bench_pipeline.py [--recordings 16] [--max-new-tokens 48] [--repeats 5] [--threads N] [--batch1]
        [--qwen-layers N] [--label-line]

"By hand" is the naive loop a user would write without the pipeline, on the same recordings, in the same batches
of 8: `processor(...)` (feature extraction + prompt tokenisation), `model.generate` on the EEG values, decoding, a
second tokenisation of the prompt + rationale up to ``Emotion:``, label scoring with one full copy of the prompt
per label on the EEG values again (c847536's `score_labels`, `reference_scoring.py`) and `parse_answer`. The
pipeline encodes each window once, shares it between `generate` and scoring, continues the generated ids and
scores all labels from one prefix pass. Encoder calls and language-model rows of one batch are counted with
forward hooks. Pipeline and hand-written runs alternate in a random order each round; the median (and minimum)
time of each is reported (`--batch1` adds the pipeline at batch 1). The language model is the tiny one (hidden 64,
2 layers), or with `--qwen-layers N` Qwen2.5-0.5B's layer shape (hidden 896, MLP 4864, 14 heads, 2 KV heads) with N
layers and the offline tokenizer's small vocabulary, random weights. An untrained model writes no label line, so its
labels are scored by a prefix pass after generation; `--label-line` makes every window's answer end in
``Emotion: <label>`` (a logits processor forcing the tokens; `generate` still returns the model's own logits), as a
trained model's does, so the pipeline takes the labels from the generation itself. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, pipeline

sys.path.insert(0, str(Path(__file__).parent))
from reference_scoring import score_labels_per_label_copies  # noqa: E402

from e2llm import SEED_CHANNELS, assemble_e2llm, build_offline_tokenizer, build_tiny_e2llm, parse_answer  # noqa: E402
from e2llm.assembly import TINY_EEG_CONFIG  # noqa: E402
from e2llm.pipeline_e2llm import DEFAULT_QUESTION, EEGEmotionPipeline  # noqa: E402

SFREQ = 200.0


def recordings(n: int, seconds: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [20 * rng.standard_normal((len(SEED_CHANNELS), int(seconds * SFREQ))) for _ in range(n)]


class ForceAnswer(LogitsProcessor):
    """Every row writes `ids` (then EOS); `generate` still returns the model's raw logits."""

    def __init__(self, ids, eos: int):
        self.ids, self.eos, self.start = list(ids), eos, None

    def __call__(self, input_ids, scores):
        if self.start is None or input_ids.shape[1] < self.start:
            self.start = input_ids.shape[1]
        step = input_ids.shape[1] - self.start
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.ids[step] if step < len(self.ids) else self.eos] = 0.0
        return forced


def label_line_kwargs(processor, max_new_tokens: int) -> dict:
    """Generation arguments that make every answer `max_new_tokens - 1` tokens of reasoning, then `Emotion: fear`."""
    tokenizer = processor.tokenizer
    tail = tokenizer("\nEmotion: fear", add_special_tokens=False)["input_ids"]
    body = tokenizer("Reasoning: alpha power is lower over frontal channels (strongly).", add_special_tokens=False)
    ids = (body["input_ids"] * max_new_tokens)[: max(1, max_new_tokens - len(tail) - 1)] + tail
    return {"logits_processor": LogitsProcessorList([ForceAnswer(ids, tokenizer.eos_token_id)])}


def by_hand(model, processor, eegs, batch_size: int, max_new_tokens: int, extra=None) -> list[str | None]:
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
                                       max_new_tokens=max_new_tokens, do_sample=False, **(extra or {}))
            answers = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            expanded = processor.tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=False)
            texts = [p.replace(processor.tokenizer.pad_token, "") + EEGEmotionPipeline.scoring_prefix(a)
                     for p, a in zip(expanded, answers)]
            scored = processor.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
            score_labels_per_label_copies(model, scored["input_ids"], scored["attention_mask"], candidates,
                                          **eeg).softmax(-1)
            predictions += [parse_answer(a, labels).label for a in answers]
    return predictions


def build_model(qwen_layers: int | None):
    if not qwen_layers:
        return build_tiny_e2llm()
    torch.manual_seed(0)
    text_config = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
                   "num_key_value_heads": 2, "num_hidden_layers": qwen_layers, "max_position_embeddings": 32768,
                   "rope_theta": 1000000.0, "tie_word_embeddings": True}
    return assemble_e2llm(build_offline_tokenizer(), text_config=text_config, eeg_config=TINY_EEG_CONFIG)


def count_work(model, fn) -> dict:
    """Encoder calls / windows and language-model calls / rows / tokens while `fn` runs."""
    counts = dict.fromkeys(("encoder_calls", "encoder_windows", "lm_calls", "lm_rows", "lm_tokens"), 0)

    def on_encoder(module, args, output):
        counts["encoder_calls"] += 1
        counts["encoder_windows"] += int(args[0].shape[0])

    def on_lm(module, args, kwargs, output):
        shape = kwargs["inputs_embeds"].shape
        counts["lm_calls"] += 1
        counts["lm_rows"] += int(shape[0])
        counts["lm_tokens"] += int(shape[0] * shape[1])

    hooks = [model.model.eeg_encoder.register_forward_hook(on_encoder),
             model.model.language_model.register_forward_hook(on_lm, with_kwargs=True)]
    try:
        fn()
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch1", action="store_true", help="also time the pipeline at batch 1")
    parser.add_argument("--qwen-layers", type=int, default=None, help="Qwen2.5-0.5B-shaped layers instead of tiny")
    parser.add_argument("--label-line", action="store_true", help="answers end in 'Emotion: <label>' (forced)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = build_model(args.qwen_layers)
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device="cpu")
    eegs = recordings(args.recordings)
    signal = {"sampling_rate": SFREQ, "channel_names": list(SEED_CHANNELS), "units": "uV"}
    tokens = {"max_new_tokens": args.max_new_tokens, "do_sample": False}
    extra = label_line_kwargs(processor, args.max_new_tokens) if args.label_line else {}

    def run_pipe(batch):
        return lambda: pipe(eegs, batch_size=batch, **signal, **tokens, generate_kwargs=extra)

    def run_hand(batch):
        return lambda: by_hand(model, processor, eegs, batch, args.max_new_tokens, extra)

    runs = {"pipeline_b8": run_pipe(8), "by_hand_b8": run_hand(8)}
    if args.batch1:
        runs["pipeline_b1"] = run_pipe(1)
    for fn in runs.values():  # warm-up: filter design, first-call allocations
        fn()
    one_batch = eegs[:8]
    work = {"pipeline": count_work(model, lambda: pipe(one_batch, batch_size=8, **signal, **tokens,
                                                       generate_kwargs=extra)),
            "by_hand": count_work(model, lambda: by_hand(model, processor, one_batch, 8, args.max_new_tokens, extra))}
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
        "language_model": (f"Qwen2.5-0.5B layer shape x {args.qwen_layers}, offline-tokenizer vocabulary"
                           if args.qwen_layers else "tiny (hidden 64, 2 layers)"),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "recordings": n,
        "window_seconds": 4.0,
        "max_new_tokens": args.max_new_tokens,
        "label_line": args.label_line,
        "repeats": args.repeats,
        "median_seconds": median,
        "min_seconds": best,
        "pipeline_over_by_hand": median["pipeline_b8"] / median["by_hand_b8"],
        "pipeline_over_by_hand_min": best["pipeline_b8"] / best["by_hand_b8"],
        "work_per_batch_of_8": work,
        "throughput_windows_per_s": {"batch_8": n / median["pipeline_b8"]},
    }
    if args.batch1:
        result["throughput_windows_per_s"]["batch_1"] = n / median["pipeline_b1"]
        result["batch8_speedup_over_batch1"] = median["pipeline_b1"] / median["pipeline_b8"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
