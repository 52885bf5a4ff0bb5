"""What the emotion head's label guidance costs: the eeg-emotion pipeline on the same windows with and without it
(`guide_labels`), alternating, several repeats (prints JSON: seconds per call and the guided / unguided ratios).

    .venv/bin/python bench/bench_label_guidance.py --model outputs/quickstart/final --data outputs/quickstart/prepared
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from transformers import pipeline

from e2llm.processing.dataset_io import dataset_metadata, load_prepared
from e2llm.training.model_loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a prepared folder (e2llm prepare)")
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, processor = load_model(args.model)
    data = load_prepared(args.data)
    metadata = dataset_metadata(data)
    step = max(1, len(data) // args.windows)
    eeg = [np.asarray(row["eeg"], dtype=np.float32) for row in data.select(range(0, step * args.windows, step))]
    signal = {"sampling_rate": float(metadata["sampling_rate"]), "channel_names": list(metadata["channel_names"]),
              "units": "uV", "batch_size": args.batch_size}
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    pipe(eeg[:2], **signal)  # warm-up
    seconds = {True: [], False: []}
    for _ in range(args.repeats):
        for guide in (True, False):
            start = time.perf_counter()
            pipe(eeg, **signal, guide_labels=guide)
            seconds[guide].append(time.perf_counter() - start)
    ratios = [g / u for g, u in zip(seconds[True], seconds[False])]
    print(json.dumps({"model": args.model, "weight": float(model.config.label_guidance_weight),
                      "label_decision": getattr(model.config, "label_decision", "language_model"),
                      "windows": len(eeg), "device": str(model.device), "guided_s": seconds[True],
                      "unguided_s": seconds[False], "ratios": ratios, "median_ratio": float(np.median(ratios))}))


if __name__ == "__main__":
    main()
