"""The paper-sized E2LLM on one GPU: stage 3, label scoring and generation, against the hardware's own limits.

Builds EEGPT at its published sizes joined to a Qwen3-8B-architecture language model (random weights: speed does not
depend on the values) the way `e2llm init --eeg-encoder eegpt` does, with the LoRA, task and precision settings of
the shipped recipe `training/configs/stage3_eegpt_qwen3-8b.yaml`, and measures in one process:

- `hardware`: a bf16 matrix product timed here (TFLOP/s, the MFU denominator) and the memory bandwidth of a large
  device-to-device copy (bytes read + written per second, the decode bound's denominator);
- `stage3`: the project's stage-3 trainer set up as `e2llm.training.stage3.main` sets it up (the recipe parsed by
  stage 3's own parser, `E2LLMSFTTrainer` + `InstructionCollator` over the frozen encoder's precomputed tokens, the
  recipe's LoRA from TRL's `get_peft_config`) on the project's instruction rows (`instruction_rows` of synthetic
  windows): tokens/s (non-padding tokens of the timed steps), TFLOP/s by 6N (N: parameters without the input
  embeddings, as the Trainer counts them), MFU, the spread of step times and peak memory;
- `pipeline`: the `eeg-emotion` pipeline on 16 recordings of 8 s (32 windows), batch 8: label scoring alone, then
  with rationales of `--new-tokens` tokens; decode ms per step from `generate` timed inside the pipeline
  (`(t(n tokens) - t(1 token)) / (n - 1)` per call), against the bound of reading the language model's weights once
  per step at the measured bandwidth.

Prints one JSON object on stdout (everything else goes to stderr).

    python bench/bench_gpu.py                      # one CUDA GPU; about 3-5 min on an H200
    python bench/bench_gpu.py --tiny               # CPU dry run: tiny EEGPT + tiny Qwen3, well under a minute
    python bench/bench_gpu.py --batch-size 4 --steps 30 --new-tokens 128
    python bench/bench_gpu.py --pack-rows on --activation-checkpointing off   # padding-free stage-3 batches

Needs torch, transformers >= 5.24, trl >= 1.16, peft, accelerate, datasets and e2llm itself; a missing or too old
one stops the script with one line naming it. A GPU machine without the package registry (the H200 machines lent
here have torch 2.11, accelerate and peft, but transformers 5.17 and no TRL or datasets) takes them as wheels
(Python 3.12), from the repository root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        transformers==5.24.0 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    python3 -m pip wheel --no-deps -w .whl .          # e2llm itself
    # on the device, with carry [".whl"]:
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \\
        && PYTHONPATH=/tmp/site python3 bench/bench_gpu.py > $OUT/bench_gpu.json

(about 16 MB of wheels; datasets needs pyarrow >= 24 and fsspec <= 2026.9.0, which the check below verifies
against what is installed there.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "training" / "configs" / "stage3_eegpt_qwen3-8b.yaml"
# The packages the benchmark imports, with the lowest versions e2llm is built for (setup.cfg).
REQUIREMENTS = ("torch>=2.6", "transformers>=5.24", "trl>=1.16", "peft>=0.18", "accelerate>=1.10.1",
                "datasets>=4.7", "pyyaml", "e2llm")
# Qwen/Qwen3-8B's text architecture (its config.json); the weights are random.
QWEN3_8B = {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
QWEN_VOCAB_SIZE = 151936
RECORDING_SECONDS = 8.0
INPUT_RATE = 200.0  # the synthetic recordings' rate (SEED's); the feature extractor resamples to the encoder's


def missing_requirements(requirements) -> list[str]:
    """What is missing or too old among `requirements` and their own (non-extra) dependencies, one phrase each."""
    from packaging.requirements import Requirement

    problems, seen = [], set()

    def check(text: str, needed_by: str | None) -> None:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            return
        name = requirement.name.lower()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} (not installed{'; ' + needed_by + ' needs it' if needed_by else ''})")
            return
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name} {version} ({needed_by or 'the benchmark'} needs {requirement.specifier})")
        if needed_by is None and name not in seen:  # one level down: what the top-level packages import
            seen.add(name)
            for dependency in importlib.metadata.requires(name) or ():
                check(dependency, name)

    for text in requirements:
        check(text, None)
    return list(dict.fromkeys(problems))


def require_packages() -> None:
    problems = missing_requirements(REQUIREMENTS)
    if problems:
        sys.exit(f"bench_gpu: missing or too old: {', '.join(problems)}; install them (or carry their wheels: see "
                 f"the docstring of {Path(__file__).name})")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny EEGPT + tiny Qwen3 on CPU (a dry run of every step)")
    parser.add_argument("--batch-size", type=int, default=None, help="stage-3 and pipeline batch (8; 2 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed stage-3 steps (20; 4 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed stage-3 steps first (3; 1 with --tiny)")
    parser.add_argument("--recordings", type=int, default=None, help="8-s recordings for the pipeline (16; 2 tiny)")
    parser.add_argument("--new-tokens", type=int, default=None, help="rationale tokens per window (64; 4 tiny)")
    parser.add_argument("--activation-checkpointing", choices=("recipe", "on", "off"), default="recipe",
                        help="stage 3's activation checkpointing: as the recipe says, or forced")
    parser.add_argument("--pack-rows", choices=("recipe", "on", "off"), default="recipe",
                        help="stage 3's padding-free batches (InstructConfig.pack_rows): as the recipe says, or forced")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the stage-3 recipe (LoRA, tasks, precision)")
    args = parser.parse_args(argv)
    defaults = {"batch_size": (8, 2), "steps": (20, 4), "warmup": (3, 1), "recordings": (16, 2), "new_tokens": (64, 4)}
    for name, (full, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
        if getattr(args, name) < (2 if name == "new_tokens" else 1):
            parser.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'new_tokens' else 1}")
    return args


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(function, *args, **kwargs) -> tuple[float, object]:
    synchronize()
    start = time.perf_counter()
    out = function(*args, **kwargs)
    synchronize()
    return time.perf_counter() - start, out


def matmul_tflops(device: str, n: int, repeats: int) -> tuple[str, float]:
    """`(dtype, TFLOP/s)` of `repeats` `n`x`n` matrix products after 3 warm-ups: bf16 on a GPU, float32 on CPU."""
    import torch

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds, _ = timed(lambda: [a @ b for _ in range(repeats)])
    return str(dtype).removeprefix("torch."), 2 * n**3 * repeats / seconds / 1e12


def copy_bandwidth(device: str, n_bytes: int, repeats: int) -> float:
    """Bytes read + written per second by `repeats` copies of an `n_bytes` buffer after 3 warm-ups."""
    import torch

    source = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device=device).normal_()
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    seconds, _ = timed(lambda: [target.copy_(source) for _ in range(repeats)])
    return 2 * n_bytes * repeats / seconds


def measure_hardware(device: str, tiny: bool) -> dict:
    """The limits of this machine, measured here: matmul TFLOP/s (the MFU denominator) and the memory bandwidth of a
    device copy (the decode bound's denominator)."""
    import torch

    n, repeats, n_bytes = (512, 5, 64 * 2**20) if tiny else (8192, 10, 4096 * 2**20)
    dtype, tflops = matmul_tflops(device, n, repeats)
    bandwidth = copy_bandwidth(device, n_bytes, repeats)
    return {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "matmul": {"dtype": dtype, "n": n, "tflops": tflops},
            "copy_bandwidth_gb_s": bandwidth / 1e9, "copy_bytes": n_bytes}


def load_recipe(path: Path, args, device: str, output_dir: str) -> tuple:
    """`(script_args, training_args, model_args)`: the stage-3 recipe at `path` parsed by stage 3's own parser
    (`e2llm.training.stage3.make_parser`), with the benchmark's step count, batch and logging (nothing saved or
    reported, a constant learning rate, bf16 on a GPU only)."""
    from e2llm.training.stage3 import make_parser

    checkpointing = {"recipe": [], "on": ["--activation_checkpointing", "true"],
                     "off": ["--activation_checkpointing", "false"]}[args.activation_checkpointing]
    packing = {"recipe": [], "on": ["--pack_rows", "true"], "off": ["--pack_rows", "false"]}[args.pack_rows]
    on_cpu = ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"] if device == "cpu" else []
    overrides = ["--output_dir", output_dir, "--max_steps", str(args.warmup + args.steps),
                 "--per_device_train_batch_size", str(args.batch_size), "--gradient_accumulation_steps", "1",
                 "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--report_to", "none",
                 "--save_strategy", "no", "--logging_steps", str(10**6), "--disable_tqdm", "true",
                 "--dataloader_num_workers", "0", "--eval_strategy", "no", "--load_best_model_at_end", "false",
                 "--seed", "0", *checkpointing, *packing, *on_cpu]
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", str(path), *overrides])
    if not model_args.use_peft:
        raise SystemExit(f"bench_gpu: the recipe {path} trains without LoRA (use_peft false); the benchmark "
                         f"measures stage 3 with LoRA")
    return script_args, training_args, model_args


def build_model(tiny: bool, device: str, dtype_name: str):
    """`(model, processor, seconds)`: EEGPT + Qwen3 E2LLM as `e2llm init --eeg-encoder eegpt` assembles it (random
    weights, the offline tokenizer; the embeddings resized to Qwen's vocabulary), built on `device`."""
    import torch

    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_TEXT_CONFIG
    from e2llm.training.init_model import foundation_eeg_config

    eeg_config, _ = foundation_eeg_config("eegpt", None, None, tiny=tiny)
    torch.manual_seed(0)
    synchronize()
    start = time.perf_counter()
    with torch.device(device):
        model, processor = assemble_e2llm(build_offline_tokenizer(), text_config=TINY_TEXT_CONFIG if tiny else QWEN3_8B,
                                          eeg_config=eeg_config)
        if not tiny:  # Qwen's output layer (the offline tokenizer uses the first ids only)
            model.resize_token_embeddings(QWEN_VOCAB_SIZE, mean_resizing=False)
    model = model.to(getattr(torch, dtype_name))
    model.config.text_config._attn_implementation = "sdpa"
    synchronize()
    return model, processor, time.perf_counter() - start


def model_summary(model) -> dict:
    """Parameter counts and the bytes a decode step reads: every decoder weight and the LM head (of the input
    embeddings only the rows of the batch's tokens, unless they are the tied head)."""
    embeddings = model.get_input_embeddings().weight
    decoder = [p for p in model.model.language_model.parameters() if p is not embeddings]
    unique = {id(p): p for p in [*decoder, *model.lm_head.parameters()]}.values()
    return {"parameters": model.num_parameters(),
            "parameters_6n": model.num_parameters(exclude_embeddings=True),
            "eeg_encoder_parameters": sum(p.numel() for p in model.model.eeg_encoder.parameters()),
            "decode_weight_bytes": sum(p.numel() * p.element_size() for p in unique),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "text_config": {k: getattr(model.config.text_config, k) for k in
                            ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                             "num_key_value_heads", "head_dim", "vocab_size")},
            "eeg_backbone": model.config.eeg_config.backbone}


def stage3_rows(model, processor, n_rows: int, script_args, training_args, device: str):
    """`(rows, windows)`: `n_rows` stage-3 rows as stage 3 builds them (`instruction_rows`: the recipe's tasks,
    training templates, tokenised once, truncated to its `max_length`) of synthetic SEED-like windows, and the
    windows' model inputs computed once (the frozen encoder's pooled tokens, unless the recipe trains the
    encoder)."""
    from e2llm.processing.instructions import evidence_reference
    from e2llm.processing.synthetic_windows import synthetic_window_dataset
    from e2llm.training.instruction_rows import instruction_rows
    from e2llm.training.window_tensors import encode_windows, extract_windows

    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=2, trial_seconds=16.0, seed=0)
    rows = instruction_rows(processor, windows, evidence_reference(windows), tasks=script_args.tasks, seed=0,
                            max_length=training_args.max_length, label_only_share=script_args.label_only_share)
    tensors = extract_windows(windows, processor.feature_extractor)
    if not script_args.train_encoder:
        tensors = encode_windows(model.model.eeg_encoder, tensors, device)
    return rows.select([i % len(rows) for i in range(n_rows)]), tensors


class CountingCollator:
    """The stage-3 collator, recording the real (non-padding) tokens of each batch it builds, in order."""

    def __init__(self, collator):
        self.collator, self.tokens = collator, []

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("attention_mask")  # packed rows have none: every position is a token
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch


def stage3_trainer(model, processor, rows, windows, recipe: tuple, device: str):
    """The project's stage-3 trainer on `rows`, set up as `e2llm.training.stage3.main` sets it up:
    `E2LLMSFTTrainer`, `InstructionCollator` over the precomputed `windows`, the recipe's LoRA from TRL's
    `get_peft_config`; plus a callback timing each step."""
    import torch
    from transformers import TrainerCallback
    from trl import get_peft_config

    from e2llm.training.data import InstructionCollator
    from e2llm.training.sft_trainer import E2LLMSFTTrainer
    from e2llm.training.starting_models import train_only

    script_args, training_args, model_args = recipe
    peft_config = get_peft_config(model_args)
    if script_args.train_encoder:
        peft_config.modules_to_save = [*(peft_config.modules_to_save or []), "eeg_encoder"]
    collator = CountingCollator(InstructionCollator(windows, processor.tokenizer.pad_token_id,
                                                    training_args.pack_rows))
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *unused, **kwargs):
            synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *unused, **kwargs):
            synchronize()
            step_times.append(time.perf_counter() - self.start)

    train_only(model, ())  # PEFT enables the adapters and modules_to_save
    trainer = E2LLMSFTTrainer(model=model, args=training_args, train_dataset=rows, processing_class=processor,
                              data_collator=collator, peft_config=peft_config, callbacks=[StepTimer()])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return trainer, collator, step_times


def run_stage3(model, processor, recipe: tuple, args, device: str, hardware: dict, n_6n: int) -> tuple[object, dict]:
    """Train `warmup + steps` steps; `(the trained PEFT model, figures of the timed steps)`."""
    script_args, training_args, model_args = recipe
    rows, windows = stage3_rows(model, processor, (args.warmup + args.steps) * args.batch_size, script_args,
                                training_args, device)
    trainer, collator, step_times = stage3_trainer(model, processor, rows, windows, recipe, device)
    result = trainer.train()
    timed_steps = step_times[args.warmup:]
    tokens = sum(collator.tokens[args.warmup:len(step_times)])
    seconds = sum(timed_steps)
    tokens_per_s = tokens / seconds
    tflops = 6 * n_6n * tokens_per_s / 1e12
    quantiles = (statistics.quantiles(timed_steps, n=10, method="inclusive") if len(timed_steps) > 1
                 else timed_steps * 9)
    figures = {
        "recipe": str(args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe),
        "lora_r": model_args.lora_r, "tasks": list(script_args.tasks), "batch_size": args.batch_size,
        "activation_checkpointing": trainer.args.activation_checkpointing, "bf16": trainer.args.bf16,
        "pack_rows": trainer.args.pack_rows, "lm_head_loss": "fused" if trainer.use_fused_lm_head else "model",
        "warmup_steps": args.warmup, "timed_steps": len(timed_steps),
        "tokens_per_sample": tokens / (len(timed_steps) * args.batch_size),
        "tokens_per_s": tokens_per_s, "tflops_6n": tflops,
        "mfu_6n": tflops / hardware["matmul"]["tflops"],
        "step_seconds": {"mean": seconds / len(timed_steps), "median": statistics.median(timed_steps),
                         "min": min(timed_steps), "max": max(timed_steps), "p10": quantiles[0], "p90": quantiles[-1],
                         "stdev": statistics.pstdev(timed_steps)},
        "train_loss": result.training_loss,
        **peak_memory(device),
    }
    return trainer.accelerator.unwrap_model(trainer.model), figures


def peak_memory(device: str) -> dict:
    import torch

    if device == "cuda":
        return {"peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "peak_memory_kind": "process max RSS (CPU)"}


class GenerateTimer:
    """Times every `model.generate` call the pipeline makes (set on the instance; `release()` restores it)."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.original = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        prompt = kwargs.get("input_ids", args[0] if args else None)
        seconds, out = timed(self.original, *args, **kwargs)
        sequences = getattr(out, "sequences", out)  # a tensor, or a GenerateOutput with return_dict_in_generate
        new_tokens = sequences.shape[1] - (prompt.shape[1] if prompt is not None else 0)
        self.calls.append({"seconds": seconds, "new_tokens": int(new_tokens), "rows": int(sequences.shape[0])})
        return out

    def release(self) -> None:
        del self.model.generate


def count_windows(outputs) -> int:
    return sum(len(out["windows"]) if "windows" in out else 1 for out in outputs)


def run_pipeline(model, processor, args, device: str, hardware: dict, lm_bytes: int) -> dict:
    """The eeg-emotion pipeline on `args.recordings` random 8-s recordings: label scoring only, then rationales."""
    import numpy as np
    import torch
    from transformers import pipeline

    from e2llm import SEED_CHANNELS

    pipe = pipeline("eeg-emotion", model=model.eval(), processor=processor, device=device)
    rng = np.random.default_rng(0)
    recordings = [20 * rng.standard_normal((len(SEED_CHANNELS), int(RECORDING_SECONDS * INPUT_RATE)))
                  for _ in range(args.recordings)]
    signal = {"sampling_rate": INPUT_RATE, "channel_names": list(SEED_CHANNELS), "units": "uV",
              "batch_size": args.batch_size}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    pipe(recordings[:1], **signal, return_rationale=False)  # warm-up
    scoring_seconds, outputs = timed(pipe, recordings, **signal, return_rationale=False)
    n_windows = count_windows(outputs)
    timer = GenerateTimer(model)
    try:
        pipe(recordings[:1], **signal, generate_kwargs={"min_new_tokens": 2, "max_new_tokens": 2})  # warm-up
        runs = {}
        for n in (1, args.new_tokens):
            timer.calls.clear()
            seconds, _ = timed(pipe, recordings, **signal, generate_kwargs={"min_new_tokens": n, "max_new_tokens": n})
            runs[n] = (seconds, list(timer.calls))
    finally:
        timer.release()
    (_, one), (many_seconds, many) = runs[1], runs[args.new_tokens]
    if [c["rows"] for c in one] != [c["rows"] for c in many] or any(c["new_tokens"] != args.new_tokens for c in many):
        raise RuntimeError(f"generate calls differ between the runs: {one} vs {many}")
    decode_ms = 1e3 * (sum(c["seconds"] for c in many) - sum(c["seconds"] for c in one)) / (
        len(many) * (args.new_tokens - 1))
    bound_ms = 1e3 * lm_bytes / (hardware["copy_bandwidth_gb_s"] * 1e9)
    return {"recordings": args.recordings, "recording_seconds": RECORDING_SECONDS, "windows": n_windows,
            "batch_size": args.batch_size, "label_scoring_windows_per_s": n_windows / scoring_seconds,
            "rationale_tokens": args.new_tokens, "with_rationale_windows_per_s": n_windows / many_seconds,
            "generate_calls": len(many), "prefill_ms_per_call": 1e3 * statistics.mean(c["seconds"] for c in one),
            "decode_ms_per_step": decode_ms, "decode_bound_ms_per_step": bound_ms,
            "decode_over_bound": decode_ms / bound_ms,
            "generate_share_of_pipeline": sum(c["seconds"] for c in many) / many_seconds, **peak_memory(device)}


def versions() -> dict:
    names = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "e2llm")
    out = {name: importlib.metadata.version(name) for name in names}
    out["python"] = platform.python_version()
    import torch

    out["cuda"] = torch.version.cuda
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def run(args) -> dict:
    import torch

    from e2llm.training.saving import merged_model

    start = time.perf_counter()
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device: the 8B benchmark needs one GPU (--tiny runs a CPU dry run)")
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as output_dir:  # the Trainer's; nothing is saved there
        recipe = load_recipe(args.recipe, args, device, output_dir)
        hardware = measure_hardware(device, args.tiny)
        dtype = recipe[2].dtype if recipe[2].dtype not in (None, "auto") else "bfloat16"
        model, processor, build_seconds = build_model(args.tiny, device, dtype)
        summary = {**model_summary(model), "build_seconds": build_seconds}
        trained, stage3 = run_stage3(model, processor, recipe, args, device, hardware, summary["parameters_6n"])
    model = merged_model(trained)
    if device == "cuda":
        torch.cuda.empty_cache()
    figures = run_pipeline(model, processor, args, device, hardware, summary["decode_weight_bytes"])
    return {"benchmark": "bench_gpu", "tiny": args.tiny, "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
            "versions": versions(), "hardware": hardware, "model": summary, "stage3": stage3, "pipeline": figures,
            "seconds_total": time.perf_counter() - start}


def main(argv=None) -> int:
    args = parse_args(argv)
    require_packages()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its metrics; stdout holds the JSON alone
        result = run(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
