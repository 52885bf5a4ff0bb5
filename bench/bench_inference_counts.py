"""Work done by one `pipeline("eeg-emotion")` call, counted with forward hooks, now and at an older commit.

    python bench/bench_inference_counts.py [--windows 3] [--max-new-tokens 8] [--before /tmp/before] [--label-line]

Counts, for one call on one recording of `--windows` windows (tiny E2LLM, 24 channels): EEG-encoder calls and the
windows they encoded, language-model calls, rows (batch entries summed over calls) and tokens (rows x sequence
length), split into the work done inside `model.generate` and the rest (label scoring, integrated gradients), and
feature-extractor runs; once plain and once with `return_evidence=True` (4 integrated-gradient steps). With
`--label-line` every answer ends in ``Emotion: fear`` (forced by a logits processor, as a trained model writes it), so
label scoring can come from the generation itself.
`--before DIR` (a checkout of an older commit, e.g. `git worktree add /tmp/before c847536`) measures the same
with that checkout's `modeling_e2llm/` imported as `e2llm`, in a subprocess of the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

SFREQ = 200.0


def _label_line(processor, max_new_tokens: int) -> dict:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    tokenizer = processor.tokenizer
    tail = tokenizer("\nEmotion: fear", add_special_tokens=False)["input_ids"]
    body = tokenizer("Reasoning: alpha is low.", add_special_tokens=False)["input_ids"] * max_new_tokens
    ids = body[: max(1, max_new_tokens - len(tail) - 1)] + tail

    class Force(LogitsProcessor):
        start = None

        def __call__(self, input_ids, scores):
            self.start = input_ids.shape[1] if self.start is None else self.start
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, -float("inf"))
            forced[:, ids[step] if step < len(ids) else tokenizer.eos_token_id] = 0.0
            return forced

    return {"logits_processor": LogitsProcessorList([Force()])}


def count_call(windows: int, max_new_tokens: int, evidence: bool, evidence_dir: str, label_line: bool = False) -> dict:
    """Counters of one pipeline call on a recording of `windows` 4-s windows."""
    import torch
    from transformers import pipeline

    from e2llm import SEED_CHANNELS, build_tiny_e2llm

    model, processor = build_tiny_e2llm()
    model.eval()
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device="cpu")
    names = list(SEED_CHANNELS[:24])
    eeg = 20 * np.random.default_rng(0).standard_normal((len(names), int(windows * 4 * SFREQ)))
    counts = {"encoder_calls": 0, "encoder_windows": 0, "feature_extractor_runs": 0}
    for part in ("generate", "other"):
        counts.update({f"lm_calls_{part}": 0, f"lm_rows_{part}": 0, f"lm_tokens_{part}": 0})
    in_generate = [False]

    def on_encoder(module, args, kwargs, output):
        values = args[0] if args else kwargs.get("eeg_values", kwargs.get("pixel_values"))
        counts["encoder_calls"] += 1
        counts["encoder_windows"] += int(values.shape[0])

    def on_language_model(module, args, kwargs, output):
        embeds = kwargs.get("inputs_embeds")
        shape = embeds.shape if embeds is not None else (kwargs.get("input_ids") if not args else args[0]).shape
        part = "generate" if in_generate[0] else "other"
        counts[f"lm_calls_{part}"] += 1
        counts[f"lm_rows_{part}"] += int(shape[0])
        counts[f"lm_tokens_{part}"] += int(shape[0]) * int(shape[1])

    generate = model.generate

    def counted_generate(*args, **kwargs):
        in_generate[0] = True
        try:
            return generate(*args, **kwargs)
        finally:
            in_generate[0] = False

    model.generate = counted_generate
    extractor_class = type(processor.feature_extractor)
    original_call = extractor_class.__call__

    def counted_extractor(self, *args, **kwargs):
        counts["feature_extractor_runs"] += 1
        return original_call(self, *args, **kwargs)

    hooks = [
        model.model.eeg_encoder.register_forward_hook(on_encoder, with_kwargs=True),
        model.model.language_model.register_forward_hook(on_language_model, with_kwargs=True),
    ]
    extractor_class.__call__ = counted_extractor
    options = {"sampling_rate": SFREQ, "channel_names": names, "units": "uV", "max_new_tokens": max_new_tokens,
               "do_sample": False, "batch_size": windows}
    if evidence:
        options.update(return_evidence=True, evidence_dir=evidence_dir, attribution_steps=4)
    if label_line:
        options["generate_kwargs"] = _label_line(processor, max_new_tokens)
    try:
        with torch.no_grad() if not evidence else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(eeg, **options)
    finally:
        extractor_class.__call__ = original_call
        for hook in hooks:
            hook.remove()
    counts["lm_rows"] = counts["lm_rows_generate"] + counts["lm_rows_other"]
    counts["lm_tokens"] = counts["lm_tokens_generate"] + counts["lm_tokens_other"]
    return counts


def measure(windows: int, max_new_tokens: int, label_line: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        return {"plain": count_call(windows, max_new_tokens, False, folder, label_line),
                "evidence": count_call(windows, max_new_tokens, True, folder, label_line)}


def measure_checkout(checkout: str, windows: int, max_new_tokens: int, label_line: bool = False) -> dict:
    """`measure` with `checkout/modeling_e2llm` imported as `e2llm`, in a subprocess."""
    with tempfile.TemporaryDirectory() as folder:
        os.symlink(Path(checkout).resolve() / "modeling_e2llm", Path(folder) / "e2llm")
        env = {**os.environ, "PYTHONPATH": folder, "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, __file__, "--windows", str(windows), "--max-new-tokens", str(max_new_tokens),
                   "--counts-only", *(["--label-line"] if label_line else [])]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, check=True)
    return json.loads(result.stdout)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--before", metavar="DIR", help="a checkout of the commit to compare with")
    parser.add_argument("--counts-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label-line", action="store_true", help="answers end in 'Emotion: fear' (forced)")
    args = parser.parse_args(argv)
    now = measure(args.windows, args.max_new_tokens, args.label_line)
    if args.counts_only:
        print(json.dumps(now))
        return now
    import e2llm

    result = {"windows": args.windows, "max_new_tokens": args.max_new_tokens, "attribution_steps": 4,
              "label_line": args.label_line,
              "e2llm": str(Path(e2llm.__file__).parent), "now": now}
    if args.before:
        before = measure_checkout(args.before, args.windows, args.max_new_tokens, args.label_line)
        result["before"] = {"checkout": args.before, **before}
        result["now_over_before"] = {
            mode: {key: (now[mode][key] / before[mode][key] if before[mode][key] else None)
                   for key in ("encoder_calls", "encoder_windows", "lm_rows", "lm_tokens", "feature_extractor_runs")}
            for mode in ("plain", "evidence")
        }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
