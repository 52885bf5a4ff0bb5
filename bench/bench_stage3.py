"""Stage-3 training throughput: the project's `E2LLMSFTTrainer` (TRL `SFTTrainer`) vs a minimal hand-written loop.

Both train the same E2LLM with the same LoRA config, collator, batches, optimizer (AdamW) and learning rate;
each runs in its own subprocess so its peak memory is its own. Rows are tokenised once and the frozen encoder's
output computed once, as the stage-3 script does (`--pack-rows`: padding-free batches). Tokens/s counts the real
(non-padding) tokens of the timed steps (after `--warmup` untimed steps). Prints one JSON object.

    python bench/bench_stage3.py                          # tiny Qwen3-architecture model, CPU
    python bench/bench_stage3.py --model small            # hidden 256, 4 layers, Qwen's 151,936-token vocabulary
    python bench/bench_stage3.py --lm-head-loss fused     # TRL's fused, chunked LM head instead of the model's
    python bench/bench_stage3.py --model qwen2.5-0.5b     # Qwen2.5-0.5B-sized (random weights), bf16 + sdpa on GPU
    python bench/bench_stage3.py --model qwen2.5-0.5b --pack-rows --attn flash_attention_2   # padding-free, varlen
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CHANNELS = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "C3", "Cz", "C4", "T7", "T8", "P3", "Pz", "P4", "O1", "O2"]
# Qwen2.5-0.5B's text architecture (random weights: throughput does not depend on the values).
QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 4096,
              "tie_word_embeddings": True, "rope_theta": 1000000.0}


QWEN_VOCAB_SIZE = 151936
# A small Qwen2-architecture LM with Qwen's real vocabulary size: where per-step overheads stop dominating on CPU.
SMALL = {"model_type": "qwen2", "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
         "tie_word_embeddings": True}


def build(model_name: str, device: str, dtype: str, attention: str = "sdpa"):
    import torch

    from e2llm import assemble_e2llm, build_offline_tokenizer
    from e2llm.assembly import TINY_EEG_CONFIG, TINY_TEXT_CONFIG

    torch.manual_seed(0)
    text = {"tiny": TINY_TEXT_CONFIG, "small": SMALL, "qwen2.5-0.5b": QWEN25_05B}[model_name]
    eeg = TINY_EEG_CONFIG if model_name == "tiny" else {"hidden_size": 256, "num_hidden_layers": 4,
                                                         "num_attention_heads": 8, "intermediate_size": 1024}
    tokenizer = build_offline_tokenizer()
    model, processor = assemble_e2llm(tokenizer, text_config=text, eeg_config=eeg)
    if model_name != "tiny":  # Qwen's output layer size (the offline tokenizer only uses the first ids)
        model.resize_token_embeddings(QWEN_VOCAB_SIZE)
    model.config.text_config._attn_implementation = attention
    return model.to(device=device, dtype=getattr(torch, dtype)), processor


def batches(model, processor, n_batches: int, batch_size: int, pack_rows: bool, seed: int = 0):
    """`(rows, collator)`: `n_batches` x `batch_size` tokenised instruction rows and the stage-3 collator over the
    frozen encoder's precomputed output."""
    from e2llm.processing.instructions import build_instructions
    from e2llm.processing.synthetic_windows import synthetic_window_dataset
    from e2llm.training.data import InstructionCollator, tokenize_instructions
    from e2llm.training.window_tensors import encode_windows, extract_windows

    windows = synthetic_window_dataset(n_subjects=1, clips_per_class=2, trial_seconds=8, channel_names=CHANNELS,
                                       seed=seed)
    rows = tokenize_instructions(processor, build_instructions(windows, tasks=("emotion", "multitask"), seed=seed))
    pooled = encode_windows(model.model.eeg_encoder, extract_windows(windows, processor.feature_extractor))
    collator = InstructionCollator(pooled, processor.tokenizer.pad_token_id, pack_rows)
    order = [i % len(rows) for i in range(n_batches * batch_size)]
    return rows.select(order), collator


def run_mode(args) -> dict:
    import torch
    from trl import get_peft_config

    from e2llm.training.arguments import E2LLMModelConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    model, processor = build(args.model, device, dtype, args.attn)
    n_steps = args.warmup + args.steps
    rows, collator = batches(model, processor, n_steps, args.batch_size, args.pack_rows)
    lora = get_peft_config(E2LLMModelConfig(use_peft=True, lora_r=16, lora_alpha=32, lora_dropout=0.0))
    tokens = [sum(len(rows[i]["input_ids"]) for i in range(s * args.batch_size, (s + 1) * args.batch_size))
              for s in range(n_steps)]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times: list[float] = []
    if args.mode == "sft":
        from transformers import TrainerCallback

        from e2llm.training.arguments import InstructConfig
        from e2llm.training.sft_trainer import E2LLMSFTTrainer

        class Timer(TrainerCallback):
            def on_step_begin(self, a, state, control, **kw):
                if device == "cuda":
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                if device == "cuda":
                    torch.cuda.synchronize()
                step_times.append(time.perf_counter() - self.start)

        for p in model.parameters():
            p.requires_grad = False
        config = InstructConfig(lm_head_loss=args.lm_head_loss, output_dir=args.output_dir, max_steps=n_steps,
                                per_device_train_batch_size=args.batch_size,
                                learning_rate=1e-4, lr_scheduler_type="constant", bf16=dtype == "bfloat16",
                                activation_checkpointing=False, report_to=[], save_strategy="no",
                                logging_steps=10**6, disable_tqdm=True, max_length=None, dataloader_num_workers=0,
                                weight_decay=0.0, max_grad_norm=0.0, use_cpu=device == "cpu",
                                pack_rows=args.pack_rows)
        trainer = E2LLMSFTTrainer(model=model, args=config, train_dataset=rows, processing_class=processor,
                             data_collator=collator, peft_config=lora, callbacks=[Timer()])
        # keep the dataset order identical to the hand loop
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)
        trainer.train()
    else:
        from accelerate.utils import send_to_device
        from peft import get_peft_model

        for p in model.parameters():
            p.requires_grad = False
        model = get_peft_model(model, lora)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
        for s in range(n_steps):
            batch = collator([rows[i] for i in range(s * args.batch_size, (s + 1) * args.batch_size)])
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            batch = send_to_device(batch, device)
            loss = model(**{**batch, "use_cache": False}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - start)
    timed = step_times[args.warmup:]
    timed_tokens = sum(tokens[args.warmup:len(step_times)])
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"mode": args.mode, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "dtype": dtype, "steps_timed": len(timed), "tokens_per_s": timed_tokens / sum(timed),
            "seconds_per_step": sum(timed) / len(timed),
            "peak_memory_mib": peak, "peak_memory_kind": "cuda max_memory_allocated" if device == "cuda" else
            "process max RSS (includes Python and libraries)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "small", "qwen2.5-0.5b"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--mode", choices=("sft", "hand"), default=None, help="run one path (used internally)")
    parser.add_argument("--output-dir", default="/tmp/e2llm-bench-stage3")
    parser.add_argument("--lm-head-loss", choices=("auto", "fused", "model"), default="auto",
                        help="the SFT path's loss (InstructConfig.lm_head_loss); 'auto' is fused on CUDA only")
    parser.add_argument("--pack-rows", action="store_true", help="padding-free batches (InstructConfig.pack_rows)")
    parser.add_argument("--attn", default="sdpa", help="the language model's attention: sdpa | flash_attention_2")
    args = parser.parse_args()
    if args.mode is not None:
        print(json.dumps(run_mode(args)))
        return 0
    results = {}
    for mode in ("hand", "sft"):
        command = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    results["sft_over_hand"] = results["sft"]["tokens_per_s"] / results["hand"]["tokens_per_s"]
    results["config"] = {"model": args.model, "lm_head_loss": args.lm_head_loss, "batch_size": args.batch_size,
                         "pack_rows": args.pack_rows, "attn": args.attn,
                         "steps": args.steps,
                         "warmup": args.warmup, "load_average_1min": os.getloadavg()[0]}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
