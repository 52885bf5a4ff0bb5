"""Long recordings in bounded memory: label scoring of a multi-hour EDF, read lazily and streamed.

Writes a synthetic 62-channel 1 kHz EDF of a given length (SEED channel names, noise plus an alpha rhythm, 16-bit
samples), then scores every 4-s window of it: `open_recording` (lazy EDF reading) -> `E2LLMFeatureExtractor.
iter_windows` (chunks of `--windows-per-chunk` windows, equal to the whole-signal chain), all through the public call
``pipe(path, return_rationale=False)`` (one encoder pass per window, label scoring from the prompt, measured evidence
per window) -> per-window scores. Prints the time, the window count, and the process's resident memory after
loading the model and at its peak (``VmHWM``). Run each length under ``/usr/bin/time -v``::

    python bench/bench_long_recording.py write --hours 1 --output /tmp/rec_1h.edf
    e2llm init --tiny --output-dir /tmp/tiny
    /usr/bin/time -v python bench/bench_long_recording.py score /tmp/rec_1h.edf --model /tmp/tiny
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SFREQ = 1000


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def write_edf(path: str, hours: float, seed: int = 0, block_seconds: int = 60) -> None:
    """A synthetic 62-channel 1 kHz EDF of `hours` (±500 µV physical range), written block by block."""
    import pyedflib

    from e2llm.electrodes import SEED_CHANNELS

    rng = np.random.default_rng(seed)
    n_channels = len(SEED_CHANNELS)
    writer = pyedflib.EdfWriter(str(path), n_channels, file_type=pyedflib.FILETYPE_EDFPLUS)
    headers = [{"label": name, "dimension": "uV", "sample_frequency": SFREQ, "physical_max": 500.0,
                "physical_min": -500.0, "digital_max": 32767, "digital_min": -32768} for name in SEED_CHANNELS]
    writer.setSignalHeaders(headers)
    phase = rng.uniform(0, 2 * np.pi, (n_channels, 1))
    try:
        for block in range(int(round(hours * 3600 / block_seconds))):
            t = (block * block_seconds) + np.arange(block_seconds * SFREQ) / SFREQ
            data = 15 * rng.standard_normal((n_channels, t.size)) + 20 * np.sin(2 * np.pi * 10 * t + phase)
            writer.writeSamples(list(np.clip(data, -499, 499)))
    finally:
        writer.close()


def score(path: str, model_dir: str, windows_per_chunk: int = 64, batch_size: int = 32) -> dict:
    """Label scores of every window of the recording at `path` through the pipeline's public call (streamed: a
    checking pass, then `windows_per_chunk` windows at a time); resident memory and time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoProcessor, pipeline

    import e2llm.pipeline_chunks_e2llm as chunks

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device="cpu")
    chunks.STREAM_WINDOWS = windows_per_chunk
    rss_model_kib = _status_kib("VmRSS")
    start = time.perf_counter()
    with torch.inference_mode():
        result = pipe(str(path), return_rationale=False, batch_size=batch_size)
    seconds = time.perf_counter() - start
    scores = np.array([list(w["scores"].values()) for w in result["windows"]])
    return {
        "file": str(path),
        "hours": result["windows"][-1]["end"] / 3600,
        "channels": len(result["channels"]["used"]),
        "windows": len(result["windows"]),
        "finite_scores": bool(np.isfinite(scores).all()),
        "seconds": round(seconds, 1),
        "rss_after_model_mib": round(rss_model_kib / 1024, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "peak_beyond_model_mib": round((_status_kib("VmHWM") - rss_model_kib) / 1024, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write a synthetic 62-channel 1 kHz EDF")
    write.add_argument("--hours", type=float, required=True)
    write.add_argument("--output", required=True)
    run = sub.add_parser("score", help="score every window of a recording in bounded memory")
    run.add_argument("file")
    run.add_argument("--model", required=True)
    run.add_argument("--windows-per-chunk", type=int, default=64)
    run.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.command == "write":
        write_edf(args.output, args.hours)
        print(f"wrote {args.output} ({Path(args.output).stat().st_size / 2**30:.2f} GiB)")
    else:
        print(json.dumps(score(args.file, args.model, args.windows_per_chunk, args.batch_size)))


if __name__ == "__main__":
    main()
