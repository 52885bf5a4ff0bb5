"""`generate` on CPU with the tiny E2LLM: eager (dynamic cache), eager with a static cache, and `torch.compile`d
decoding steps (static cache, Transformers' auto-compile with `CompileConfig`), in tokens per second.

    python bench/bench_compile_generation.py [--batch 8] [--new-tokens 48] [--repeats 3] [--threads N] [--fullgraph]

Every variant generates exactly `--new-tokens` tokens greedily (`min_new_tokens` = `max_new_tokens`) for `--batch`
one-window prompts, with the EEG precomputed (`eeg_features`). The compiled variant's first call (compilation) is
reported apart from its steady-state runs; the greedy tokens of every variant are compared with eager's. Prints
one JSON object; a variant that fails reports its error instead of a number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from transformers import CompileConfig

from e2llm import SEED_CHANNELS, build_tiny_e2llm


def prompts(processor, batch: int):
    conversation = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": "Which emotion?"}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    rng = np.random.default_rng(0)
    eeg = [20 * rng.standard_normal((len(SEED_CHANNELS), 800)) for _ in range(batch)]
    return processor(text=[text] * batch, eeg=eeg, sampling_rate=200.0, channel_names=list(SEED_CHANNELS),
                     units="uV", return_tensors="pt")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fullgraph", action="store_true", help="compile with fullgraph=True")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = build_tiny_e2llm()
    model.eval()
    inputs = prompts(processor, args.batch)
    with torch.no_grad():
        features = model.get_eeg_features(inputs["eeg_values"], inputs["eeg_channel_ids"], inputs["eeg_channel_mask"])
    common = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "eeg_features": features,
              "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    compile_config = CompileConfig(fullgraph=args.fullgraph, mode="default")  # "reduce-overhead" is CUDA graphs
    compile_config._compile_all_devices = True  # Transformers auto-compiles on accelerators only, unless told
    variants = {
        "eager_dynamic_cache": {},
        "eager_static_cache": {"cache_implementation": "static", "disable_compile": True},
        "compiled_static_cache": {"cache_implementation": "static", "compile_config": compile_config},
    }
    tokens = args.batch * args.new_tokens
    result = {"device": "cpu", "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "model": "tiny E2LLM (Qwen3 architecture, hidden 64, 2 layers)", "batch": args.batch,
              "new_tokens": args.new_tokens, "prompt_tokens": int(inputs["input_ids"].shape[1]),
              "repeats": args.repeats, "fullgraph": args.fullgraph, "variants": {}}
    reference = None
    for name, options in variants.items():
        entry = {}
        try:
            start = time.perf_counter()
            out = model.generate(**common, **options)  # warm-up (compilation for the compiled variant)
            entry["first_call_seconds"] = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = model.generate(**common, **options)
                times.append(time.perf_counter() - start)
            entry.update(seconds=times, tokens_per_second=tokens / statistics.median(times))
            reference = out if reference is None else reference
            entry["same_tokens_as_eager"] = bool(torch.equal(out, reference))
        except Exception as error:  # reported, not hidden: the JSON says which variant failed and why
            entry["error"] = f"{type(error).__name__}: {str(error)[:500]}"
        result["variants"][name] = entry
    eager = result["variants"]["eager_dynamic_cache"].get("tokens_per_second")
    compiled = result["variants"]["compiled_static_cache"].get("tokens_per_second")
    result["compiled_over_eager_tokens_per_second"] = compiled / eager if eager and compiled else None
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
