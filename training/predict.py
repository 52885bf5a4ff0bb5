"""`e2llm predict`: run the ``eeg-emotion`` pipeline on recordings and print one result per window.

    e2llm predict sub-01.edf sub-02.vhdr --model runs/stage3 --format table
    e2llm predict rec.fif --model runs/stage3 --output predictions.jsonl --evidence-dir pictures/

Any file MNE reads works (EDF/BDF, FIF, BrainVision, EEGLAB, ...); its EEG channels are used (read with
`e2llm.processing.recording.read_recording`, which recognises non-EEG channels by name). JSON lines
(default) hold one object per window with the file, start/end seconds, label (null when the answer could
not be parsed), probabilities per label, rationale and the generated text, and one closing object per
file with the aggregate label (``"window": "all"``).

Over many files it runs unchanged on N processes, each taking a contiguous shard of the files; the rows come back
in the order of the files and only the main process writes them::

    accelerate launch --num_processes 4 -m e2llm.training.cli predict recordings/*.edf --model runs/stage3 \
        --output predictions.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recordings MNE can read")
    parser.add_argument("--model", required=True, metavar="DIR", help="a saved E2LLM folder or Hub id")
    parser.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    parser.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    parser.add_argument("--question", default=None, help="ask this instead of the default question")
    parser.add_argument("--no-rationale", action="store_true", help="label scoring only (no text generation)")
    parser.add_argument("--no-filters", action="store_true", help="the recordings are already band-passed")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per model call")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--evidence-dir", metavar="DIR", help="also save scalp-map evidence PNGs here")
    parser.add_argument("--baseline", metavar="FILE",
                        help="a recording of the same person and montage (e.g. at rest) that band power is stated "
                             "against, in the evidence maps and in the prompts of a model trained with measured "
                             "evidence (default: each file's own mean over its windows)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true")


def recording_input(path: str):
    """A pipeline input for a file: its EEG channels under their 10-05 names (``EEG Fp1-REF`` -> ``Fp1``), opened
    lazily by `e2llm.recording_file_e2llm.open_recording`, the same reading path as ``pipeline(path)`` (EOG, ECG,
    EMG, reference and trigger channels dropped by name and type; damaged files refused)."""
    from e2llm.recording_file_e2llm import open_recording

    return open_recording(path)


def result_rows(path: str, result: dict) -> list[dict]:
    """Flat rows of one file's pipeline result: one per window, then the aggregate."""
    windows = result.get("windows", [result])
    rows = []
    for i, window in enumerate(windows):
        row = {"file": path, "window": i, **{k: window[k] for k in ("start", "end", "label", "parseable", "scores",
                                                                       "rationale", "generated_text")}}
        if "evidence" in window:
            row["evidence_png"] = window["evidence"]["png"]
        rows.append(row)
    votes = result.get("votes", {} if result["label"] is None else {result["label"]: 1})
    rows.append({"file": path, "window": "all", "label": result["label"], "scores": result["scores"],
                 "votes": votes, "n_windows": len(windows),
                 "n_unparseable": result.get("n_unparseable", int(result["label"] is None))})
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table: file, window, start-end, label, top probability."""
    header = f"{'file':<32} {'window':>6} {'start':>8} {'end':>8}  {'label':<14} {'p(label)':>8}  top score"
    lines = [header, "-" * len(header)]
    for row in rows:
        top = max(row["scores"], key=row["scores"].get)
        label = row["label"] if row["label"] is not None else "UNPARSEABLE"
        p = f"{row['scores'][row['label']]:.3f}" if row["label"] is not None else "-"
        start = f"{row['start']:.1f}" if "start" in row else ""
        end = f"{row['end']:.1f}" if "end" in row else ""
        name = Path(row["file"]).name[-32:]
        lines.append(f"{name:<32} {row['window']!s:>6} {start:>8} {end:>8}  {label:<14} {p:>8}  "
                     f"{top} {row['scores'][top]:.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from transformers import pipeline

    from e2llm.training.evaluate import load_model
    from e2llm.training.sharding import (
        inference_device,
        is_main_process,
        process_count,
        process_index,
        sharded_map,
    )

    missing = [f for f in args.files if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(f"no such recording(s): {missing}")
    model, processor = load_model(args.model, inference_device(args.device), args.trust_remote_code)
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    options = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
               "return_rationale": not args.no_rationale, "apply_filters": not args.no_filters}
    if args.question:
        options["question"] = args.question
    if args.baseline:
        if not Path(args.baseline).exists():
            raise FileNotFoundError(f"no such baseline recording: {args.baseline}")
        options["baseline"] = recording_input(args.baseline)
    if args.evidence_dir:
        options.update(return_evidence=True, evidence_dir=args.evidence_dir)

    def predict_files(paths: list[str]) -> list[list[dict]]:
        if process_count() > 1:
            print(f"process {process_index()}/{process_count()}: {len(paths)} of {len(args.files)} files",
                  file=sys.stderr)
        return [result_rows(path, pipe(recording_input(path), **options)) for path in paths]

    rows = [row for file_rows in sharded_map(predict_files, args.files) for row in file_rows]
    if not is_main_process():
        return 0
    text = format_table(rows) if args.format == "table" else "\n".join(json.dumps(row) for row in rows)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{len(rows)} rows written to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


__all__ = ["add_arguments", "format_table", "recording_input", "result_rows", "run"]
