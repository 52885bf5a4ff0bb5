"""Benchmark: what strict loading costs (prints JSON).

    python bench/bench_model_folder_check.py

`check_model_folder` (every JSON file parsed, safetensors headers checked against the file sizes, label map, tokenizer
vs model) on the tiny model's folder; `from_pretrained` of that folder, strict and not; and the check with a
`tokenizer.json` the size of Qwen2.5's (151,665 tokens, 151,387 merges; synthetic tokens, real layout). Best of 5.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from e2llm import E2LLMForConditionalGeneration, build_tiny_e2llm
from e2llm.folder_checks_e2llm import check_model_folder


def best_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(min(times) * 1e3, 1)


def qwen_sized_tokenizer(folder: Path, eeg_token_id: int) -> float:
    """Replace the folder's tokenizer.json vocabulary and merges by Qwen2.5-sized ones; returns its size in MB."""
    path = folder / "tokenizer.json"
    content = json.loads(path.read_text())
    content["model"]["vocab"] = {**{f"tok{i}": i for i in range(151_665)}, "<|eeg|>": eeg_token_id}
    content["model"]["merges"] = [[f"a{i}", f"b{i}"] for i in range(151_387)]
    path.write_text(json.dumps(content))
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["vocab_size"] = 151_936
    (folder / "config.json").write_text(json.dumps(config))
    return round(path.stat().st_size / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, processor = build_tiny_e2llm()
    folder = Path(tempfile.mkdtemp()) / "tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    result = {
        "check_model_folder_tiny_ms": best_ms(lambda: check_model_folder(folder), args.repeats),
        "from_pretrained_strict_ms": best_ms(lambda: E2LLMForConditionalGeneration.from_pretrained(folder),
                                             args.repeats),
        "from_pretrained_not_strict_ms": best_ms(
            lambda: E2LLMForConditionalGeneration.from_pretrained(folder, strict=False), args.repeats),
    }
    result["qwen_sized_tokenizer_json_mb"] = qwen_sized_tokenizer(folder, model.config.eeg_token_id)
    result["check_model_folder_qwen_sized_tokenizer_ms"] = best_ms(lambda: check_model_folder(folder), args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
