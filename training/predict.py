"""`e2llm predict`: run the ``eeg-emotion`` pipeline on recordings and write one row per window.

    e2llm predict sub-01.edf sub-02.vhdr --model runs/stage3 --format table
    e2llm predict rec.fif --model runs/stage3 --output predictions.jsonl --evidence-dir pictures/
    e2llm predict cap.bdf --model runs/stage3 --montage biosemi64 --line-freq 60

Any file MNE reads works (EDF/BDF, FIF, BrainVision, EEGLAB, ...), read by the pipeline's own path (one channel rule;
`--channel-map`, `--montage`, `--units`, `--line-freq` for files whose labels, units or mains frequency need saying).
JSON lines (default) hold one object per window (file, start/end seconds, label or null when the answer could not be
parsed or the window is no emotion EEG (``"answer": "insufficient evidence"`` and its ``abstention_reason``),
probabilities per label, the rationale with its numbers from measurement, the generated text, the measured
evidence, the claims linked to it, the label support of the cited evidence), then one closing object per file
(``"window": "all"``: the aggregate label, the channels used and dropped, the filter).

Each file's rows are written (and flushed) as soon as the file is done; with ``--output`` into a hidden temporary
beside it that replaces it at the end (whole or not at all). ``--output`` is never an input nor inside one, and an
existing file there is replaced only when e2llm wrote it, or with ``--overwrite``. A file that fails is reported on
standard error with its path and the reason, and the other files still run. Standard output carries only the rows:
MNE's own messages go to standard error.

Exit status: 0 when every file was predicted; 1 when some files failed (the others' rows are written); 2 for an error
in the arguments or the model, before any file.

Over many files it runs unchanged on N processes, each taking a contiguous shard of the files and writing its rows to
``OUTPUT.part<rank>`` as each file completes; the main process then joins the parts into ``OUTPUT`` in file order::

    accelerate launch --num_processes 4 -m e2llm.training.cli predict recordings/*.edf --model runs/stage3 \\
        --output predictions.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path

import mne
from accelerate.utils import gather_object
from transformers import pipeline

from e2llm.processing.signal_options import add_signal_arguments, signal_options
from e2llm.safe_output import atomic_open, check_output_file
from e2llm.training.cli_errors import cli_words
from e2llm.training.model_loading import load_model
from e2llm.training.sharding import (
    inference_device,
    is_main_process,
    process_count,
    process_index,
    shard_bounds,
)

EXIT_SOME_FAILED = 1
WINDOW_KEYS = ("start", "end", "label", "answer", "abstention_reason", "parseable", "refused", "unusable_channels",
               "scores", "rationale", "generated_text", "evidence", "claims", "removed_claims", "removed_support",
               "label_support")
SUMMARY_KEYS = ("answer", "abstention_reason", "channels", "filter", "warning", "file_warnings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 0 every file predicted; 1 some files failed (each reported on standard error with "
                     "its path and reason; the other files' rows are written); 2 an error in the arguments or the "
                     "model, before any file")
    parser.add_argument("files", nargs="+", metavar="FILE", help="recordings MNE can read")
    parser.add_argument("--model", required=True, metavar="DIR", help="a saved E2LLM folder or Hub id")
    parser.add_argument("--output", metavar="FILE",
                        help="write here instead of standard output (never over an input; over an existing file only "
                             "when e2llm wrote it, or with --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output file that e2llm did not write (an input is never replaced)")
    parser.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    parser.add_argument("--question", default=None, help="ask this instead of the default question")
    parser.add_argument("--no-rationale", action="store_true", help="label scoring only (no text generation)")
    parser.add_argument("--no-filters", action="store_true", help="the recordings are already band-passed")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per model call")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--evidence-dir", metavar="DIR", help="also save scalp-map evidence PNGs here")
    parser.add_argument("--baseline", metavar="FILE",
                        help="a recording of the same person and montage (e.g. at rest) that band power is measured "
                             "against (default: each file's own mean when it has at least 10 windows, else the "
                             "reference the model ships)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    add_signal_arguments(parser)


def result_rows(path: str, result: dict) -> list[dict]:
    """Flat rows of one file's pipeline result: one per window, then the aggregate."""
    windows = result.get("windows", [result])
    rows = []
    for i, window in enumerate(windows):
        row = {"file": path, "window": i, **{k: window[k] for k in WINDOW_KEYS if k in window}}
        if "evidence_map" in window:
            row["evidence_png"] = window["evidence_map"]["png"]
        rows.append(row)
    votes = result.get("votes", {} if result["label"] is None else {result["label"]: 1})
    rows.append({"file": path, "window": "all", "label": result["label"], "scores": result["scores"],
                 "votes": votes, "n_windows": len(windows),
                 "n_unparseable": result.get("n_unparseable", int(result["label"] is None and
                                                                  result.get("abstention_reason") is None)),
                 "n_refused": result.get("n_refused", int("refused" in result)),
                 "n_abstained": result.get("n_abstained", int(result.get("abstention_reason") is not None)),
                 **{k: result[k] for k in SUMMARY_KEYS if k in result}})
    return rows


def _table_line(row: dict) -> str:
    top = max(row["scores"], key=row["scores"].get)
    label = row["label"] if row["label"] is not None else \
        "ABSTAINED" if row.get("abstention_reason") is not None else "UNPARSEABLE"
    p = f"{row['scores'][row['label']]:.3f}" if row["label"] is not None else "-"
    start = f"{row['start']:.1f}" if "start" in row else ""
    end = f"{row['end']:.1f}" if "end" in row else ""
    name = Path(row["file"]).name[-32:]
    return (f"{name:<32} {row['window']!s:>6} {start:>8} {end:>8}  {label:<14} {p:>8}  "
            f"{top} {row['scores'][top]:.3f}")


TABLE_HEADER = f"{'file':<32} {'window':>6} {'start':>8} {'end':>8}  {'label':<14} {'p(label)':>8}  top score"


def format_table(rows: list[dict]) -> str:
    """Plain-text table: file, window, start-end, label, top probability."""
    return "\n".join([TABLE_HEADER, "-" * len(TABLE_HEADER), *map(_table_line, rows)])


class RowWriter:
    """Writes rows as they come (JSON lines, or table lines under one header) and flushes after each file."""

    def __init__(self, stream, table: bool):
        self.stream, self.table, self.count = stream, table, 0
        if table:
            self.stream.write(TABLE_HEADER + "\n" + "-" * len(TABLE_HEADER) + "\n")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.stream.write((_table_line(row) if self.table else json.dumps(row)) + "\n")
        self.count += len(rows)
        self.stream.flush()


def _options(args: argparse.Namespace) -> dict:
    options = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
               "return_rationale": not args.no_rationale, "apply_filters": not args.no_filters,
               **{k: v for k, v in signal_options(args).items() if v is not None}}
    if args.question:
        options["question"] = args.question
    if args.baseline:
        options["baseline"] = args.baseline
    if args.evidence_dir:
        options.update(return_evidence=True, evidence_dir=args.evidence_dir)
    return options


@functools.cache
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2llm predict")
    add_arguments(parser)
    return parser


def predict_files(pipe, paths: list[str], options: dict, writer: RowWriter) -> list[tuple[str, str]]:
    """Run every file, writing its rows when it completes; `(path, reason)` of the files that failed."""
    failures = []
    for path in paths:
        try:
            result = pipe(path, **options)
        except (ValueError, OSError) as error:  # this file's problem: say so, go on with the others
            reason = cli_words(str(error) or type(error).__name__, _parser())  # in the words of this command
            failures.append((path, reason))
            print(f"e2llm predict: {path}: failed: {reason}", file=sys.stderr, flush=True)
            continue
        for warning in result.get("file_warnings", []):  # what MNE said while reading the file
            print(f"e2llm predict: {path}: {warning}", file=sys.stderr)
        writer.write(result_rows(path, result))
    return failures


@contextlib.contextmanager
def _quiet_stdout():
    """Everything printed while predicting (MNE's progress messages, a library's print) goes to standard error;
    yields the real standard output for the rows."""
    real = sys.stdout
    handlers = list(mne.utils.logger.handlers)
    for handler in handlers:
        if getattr(handler, "stream", None) is real:
            handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        for handler in handlers:
            if getattr(handler, "stream", None) is sys.stderr:
                handler.setStream(real)


def run(args: argparse.Namespace) -> int:
    model, processor = load_model(args.model, inference_device(args.device), args.trust_remote_code)
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    options = _options(args)
    files = list(args.files)
    n_processes = process_count()
    with _quiet_stdout() as stdout:
        if n_processes == 1:
            failures = _run_one(pipe, files, options, args, stdout)
        else:
            start, end = shard_bounds(len(files), n_processes, process_index())
            print(f"process {process_index()}/{n_processes}: {end - start} of {len(files)} files", file=sys.stderr)
            failures = _run_shard(pipe, files[start:end], options, args, stdout)
    if failures:
        print(f"e2llm predict: {len(failures)} of {len(files)} files failed: "
              f"{', '.join(path for path, _ in failures)}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def _output_path(args: argparse.Namespace) -> Path:
    """`--output`, checked (`e2llm.safe_output.check_output_file`): never an input or inside one, and over an
    existing file only when e2llm wrote it or `--overwrite` is given."""
    return check_output_file(args.output, inputs=[*args.files, args.model, args.baseline],
                             overwrite=bool(getattr(args, "overwrite", False)), option="--output")


def _run_one(pipe, files, options, args, stdout) -> list[tuple[str, str]]:
    if not args.output:
        return predict_files(pipe, files, options, RowWriter(stdout, args.format == "table"))
    # rows go to a hidden temporary beside the output as each file completes; it replaces the output at the end
    # (whole or not at all), recorded as written by e2llm
    with atomic_open(_output_path(args), record=True) as handle:
        writer = RowWriter(handle, args.format == "table")
        failures = predict_files(pipe, files, options, writer)
    print(f"{writer.count} rows written to {args.output}", file=sys.stderr)
    return failures


def _run_shard(pipe, files, options, args, stdout) -> list[tuple[str, str]]:
    """One process of several: rows to `OUTPUT.part<rank>` as files complete; the main process joins the parts."""
    target = _output_path(args) if args.output else None
    part = (target.with_name(f"{target.name}.part{process_index()}") if target
            else Path(f".e2llm-predict.part{process_index()}"))
    with open(part, "w", encoding="utf-8") as handle:
        failures = predict_files(pipe, files, options, RowWriter(handle, False))
    parts = gather_object([str(part)])  # one per process, in rank order: the files' order
    failures = [f for group in gather_object([failures]) for f in group]
    if is_main_process():
        rows = [json.loads(line) for name in parts for line in Path(name).read_text().splitlines()]
        out = atomic_open(target, record=True) if target else contextlib.nullcontext(stdout)
        with out as handle:
            RowWriter(handle, args.format == "table").write(rows)
        for name in parts:
            Path(name).unlink()
        if target:
            print(f"{len(rows)} rows written to {target}", file=sys.stderr)
    return failures


__all__ = ["EXIT_SOME_FAILED", "RowWriter", "add_arguments", "format_table", "predict_files", "result_rows", "run"]
