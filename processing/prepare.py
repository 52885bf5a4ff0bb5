"""`e2llm prepare`: read a dataset folder into labelled windows saved with `datasets.save_to_disk`.

>>> from e2llm.processing.prepare import prepare_dataset
>>> ds = prepare_dataset("synthetic", None, n_subjects=1, trial_seconds=8.0, progress=False)
>>> ds.num_rows, ds[0]["eeg"].__len__(), ds.features["emotion"].names[0]
(160, 62, 'happiness')

Command line (the same, saved with ``summary.json``)::

    e2llm prepare seed-vii --root /data/SEED-VII --output-dir prepared/seed-vii
    e2llm prepare deap --root /data/DEAP --output-dir prepared/deap --baseline-removal
    e2llm prepare folder --root my_eeg/ --labels my_eeg/labels.csv --output-dir prepared/mine --channels each
    e2llm prepare folder --root biosemi/ --montage biosemi128 --line-freq 60 --output-dir prepared/biosemi
    e2llm prepare synthetic --n-subjects 2 --trial-seconds 12 --output-dir prepared/synthetic

Every window is checked on its raw samples (`e2llm.processing.window_quality`): unusable channels are left out of
it, a window with more than half unusable is refused. ``summary.json`` says, per file, which channels were used and
dropped (with the reason), MNE's warnings, and the windows refused or masked; ``e2llm prepare`` prints the same on
standard error.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from e2llm.output_lock import output_lock
from e2llm.processing.dataset_io import (
    DATASET_UNITS,
    load_prepared,
    save_prepared,
    trial_windows,
    windows_to_dataset,
)
from e2llm.processing.preprocess import PreprocessingParams
from e2llm.processing.readers import READERS, get_reader
from e2llm.processing.readers._channel_policy import CHANNEL_POLICIES
from e2llm.processing.signal_options import add_signal_arguments, parse_line_freq, signal_options
from e2llm.processing.synthetic import read_synthetic_marker
from e2llm.processing.window_quality import WindowQuality, window_problems
from e2llm.safe_output import check_output_dir

DEFAULT_LINE_FREQ = 50.0


def _preprocessing_summary(params: PreprocessingParams, steps: list | None, filtered: bool, notch: str) -> dict:
    """The ``preprocessing`` metadata entry: parameters, whether the chain filtered, one trial's steps."""
    return {
        "params": params.to_dict(),
        "notch_source": notch,
        "filter_applied": bool(filtered),
        "note": ("sources marked as already preprocessed (SEED-family .mat files) are resampled and "
                 "re-referenced as asked but never filtered again"),
        "example_steps": steps or [],
    }


def prepare_dataset(
    name: str,
    root,
    output_dir=None,
    window_seconds: float = 4.0,
    stride_seconds: float = 4.0,
    l_freq: float | None = 0.1,
    h_freq: float | None = 70.0,
    notch_freqs=None,
    line_freq: float | None = None,
    reference: str | None = None,
    target_sfreq: float = 200.0,
    overwrite: bool = False,
    progress: bool = True,
    cache_dir=None,
    **reader_kwargs,
):
    """Read dataset `name` under `root` into a `datasets.Dataset` of windows (µV, schema of `dataset_io`).

    Args:
        name: a key of `e2llm.processing.readers.READERS` ("seed-vii", "seed", "deap", "folder", "synthetic"...).
        root: the dataset folder (None for "synthetic").
        output_dir: when given, the dataset is saved there (``save_to_disk`` + ``summary.json``,
            atomically) and the returned dataset is the saved one.
        window_seconds, stride_seconds, l_freq, h_freq, notch_freqs, reference, target_sfreq: the
            `PreprocessingParams`; raw sources are band-passed and notched, already-preprocessed ones
            only resampled / re-referenced. `notch_freqs` None: the line frequency (below).
        line_freq: the power-line frequency to notch when `notch_freqs` is None (default: the one every file
            states, else 50 Hz; the metadata's ``preprocessing.notch_source`` says which).
        overwrite: replace a non-empty `output_dir` only if e2llm wrote it; `root` or a plain file, never.
        progress: show a tqdm bar over the reader's files.
        cache_dir: where the Arrow file is written before saving (default: a temporary folder).
        **reader_kwargs: passed to the reader (e.g. ``subjects=[1, 2]``, ``source="raw"``).

    Raises:
        ValueError / FileNotFoundError: bad parameters or a bad dataset file (the message names it).
        FileExistsError: `output_dir` is not empty and `overwrite` is False.
    """
    if output_dir is not None:  # fail before reading anything; never delete the input or a folder not ours
        output_dir = check_output_dir(output_dir, inputs=[root, *_input_paths(reader_kwargs)], overwrite=overwrite)
    notch_freqs = _frequencies(notch_freqs)
    settings = {"l_freq": l_freq, "h_freq": h_freq, "reference": reference, "target_sfreq": target_sfreq,
                "window_seconds": window_seconds, "stride_seconds": stride_seconds}
    if output_dir is None:
        return _read_windows(name, root, notch_freqs, line_freq, settings, progress, cache_dir, reader_kwargs)[0]
    with output_lock(output_dir):  # one writer per folder; a second one is refused with who holds it
        dataset, run = _read_windows(name, root, notch_freqs, line_freq, settings, progress, cache_dir, reader_kwargs)
        bars_were_on = not datasets.are_progress_bars_disabled()
        if not progress:
            datasets.disable_progress_bars()
        try:
            save_prepared(dataset, output_dir, summary=run.summary(), overwrite=overwrite)
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()
    return load_prepared(output_dir)


def _read_windows(name, root, notch_freqs, line_freq, settings: dict, progress: bool, cache_dir, reader_kwargs: dict):
    """`(dataset, preparation)`: the windows of dataset `name` under `root` (`settings`: the other
    `PreprocessingParams`), and the `_Preparation` that read them (its summary)."""
    reader = get_reader(name, root, **reader_kwargs)
    notch, notch_source = _notch(notch_freqs, line_freq, reader)
    params = PreprocessingParams(notch_freqs=notch, **settings)
    run = _Preparation(reader, params, notch_source, root)
    return windows_to_dataset(run.chunks(progress), run.metadata, cache_dir=cache_dir), run


def _frequencies(notch_freqs) -> tuple[float, ...] | None:
    """`notch_freqs` as a tuple of Hz: one number is taken as the only frequency (``50`` -> ``(50.0,)``)."""
    if notch_freqs is None:
        return None
    values = (notch_freqs,) if isinstance(notch_freqs, (int, float, np.number)) else notch_freqs
    try:
        return tuple(float(f) for f in values)
    except (TypeError, ValueError):
        raise ValueError(f"notch_freqs must be a frequency in Hz or a list of them (e.g. 50 or [50, 100]), got "
                         f"{notch_freqs!r}") from None


class _Preparation:
    """One `prepare_dataset` run: the metadata, the window chunks of every trial, and what the run reports."""

    def __init__(self, reader, params: PreprocessingParams, notch_source: str, root):
        self.reader, self.params, self.notch_source = reader, params, notch_source
        self.channel_names = list(reader.channel_names)
        self.counts = {"trials": 0, "trials_without_window": [], "files": {}}
        self.quality = WindowQuality()
        self.metadata = {
            "dataset": reader.name,
            "sampling_rate": float(params.target_sfreq),
            "channel_names": self.channel_names,
            "units": DATASET_UNITS,
            "label_column": "emotion",
            "label_names": list(reader.label_names),
            "window_seconds": float(params.window_seconds),
            "stride_seconds": float(params.stride_seconds),
            "preprocessing": _preprocessing_summary(params, None, False, notch_source),
            "source": reader.describe(),
            "rating_columns": list(reader.rating_columns),
        }
        generated = read_synthetic_marker(root)
        if generated is not None:  # files from e2llm's generator in a real dataset's layout: never that dataset
            self.metadata.update(dataset="synthetic", synthetic=True, source={**self.metadata["source"], **generated})

    def chunks(self, progress: bool):
        """Window chunks of every trial, read one file at a time (the metadata's steps are completed at the end)."""
        steps, filtered = None, False
        partial = getattr(self.reader, "partial_channels", False)
        bar = tqdm(self.reader.items(), desc=f"prepare {self.reader.name}", unit="file", disable=not progress)
        for item in bar:
            for trial in self.reader.read_item(item):
                self.counts["trials"] += 1
                _note_file(self.counts["files"], trial.recording.provenance)
                chunk = _trial_chunk(trial, self.params, self.channel_names, partial, self.quality)
                if chunk is None:
                    self.counts["trials_without_window"].append([trial.subject, trial.session, trial.trial])
                    continue
                provenance = chunk.pop("provenance")
                filtered = filtered or bool(provenance.get("steps", [{}])[-1].get("filter_applied"))
                steps = steps or provenance.get("steps")
                yield chunk
        self.metadata["preprocessing"] = _preprocessing_summary(self.params, steps, filtered, self.notch_source)

    def summary(self) -> dict:
        """Entries of ``summary.json`` beyond the counts: trials read, channels per file, window quality."""
        channels = getattr(self.reader, "channel_report", None) or {"files": self.counts["files"]}
        return {"n_trials_read": self.counts["trials"], "trials_without_window": self.counts["trials_without_window"],
                "channels": channels, "window_quality": self.quality.as_dict()}


def _notch(notch_freqs, line_freq, reader) -> tuple[tuple[float, ...], str]:
    """The notch frequencies and where they come from: given, `line_freq`, the files, or the 50 Hz default."""
    if notch_freqs is not None:
        return notch_freqs, "notch_freqs given"
    line_freq = parse_line_freq(line_freq)
    if line_freq is not None:
        return (line_freq,), "line_freq given"
    stated = getattr(reader, "line_freq", None)
    if stated:
        return (float(stated),), "line frequency stated by the files"
    return (DEFAULT_LINE_FREQ,), f"default {DEFAULT_LINE_FREQ:g} Hz (no line frequency given or stated)"


def _note_file(files: dict, provenance: dict) -> None:
    """Keep, per source file, the channels used and dropped and MNE's warnings (readers of MNE files say them)."""
    if "channels" not in provenance:
        return
    source = str(provenance.get("source", "")).split(" [")[0]
    files.setdefault(source, {**provenance["channels"], "warnings": list(provenance.get("warnings", []))})


def _trial_chunk(trial, params, channel_names, partial: bool, quality: WindowQuality) -> dict | None:
    """One trial's windows, checked on its raw samples; with `partial` (channel_policy "each") the trial's own
    channels are placed in the dataset's, the others zero (masked by the feature extractor)."""
    own = list(trial.recording.ch_names)
    chunk = trial_windows(trial, params, own if partial else channel_names)
    if chunk is None:
        return None
    problems = window_problems(trial.recording, chunk["start"], params.window_seconds)
    if partial:
        full = np.zeros((chunk["eeg"].shape[0], len(channel_names), chunk["eeg"].shape[2]), dtype=np.float32)
        full[:, [channel_names.index(n) for n in own]] = chunk["eeg"]
        chunk["eeg"], chunk["present"] = full, np.isin(channel_names, own)
    where = {"source": str(trial.recording.provenance.get("source", "")), "subject": int(trial.subject),
             "session": int(trial.session), "trial": int(trial.trial)}
    chunk = quality.apply(chunk, problems, channel_names, where)
    if chunk is not None:
        chunk.pop("present", None)
    return chunk


def _input_paths(reader_kwargs: dict) -> list:
    """Paths among the reader options (e.g. the folder reader's label table), protected like the root."""
    return [value for value in reader_kwargs.values() if isinstance(value, (str, Path)) and Path(value).exists()]


def _optional_float(text: str) -> float | None:
    return None if str(text).lower() in ("none", "off", "") else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``e2llm prepare``."""
    parser.add_argument("dataset", choices=sorted(READERS), help="which dataset layout to read")
    parser.add_argument("--root", type=Path, help="dataset folder (not needed for 'synthetic')")
    parser.add_argument("--output-dir", type=Path, required=True, help="folder to write (save_to_disk + summary.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    group = parser.add_argument_group("preprocessing")
    group.add_argument("--window-seconds", type=float, default=4.0, help="window length in seconds (default 4)")
    group.add_argument("--stride-seconds", type=float, default=4.0, help="step between window starts (default 4)")
    group.add_argument("--l-freq", type=_optional_float, default=0.1, help="high-pass edge in Hz ('none' to skip)")
    group.add_argument("--h-freq", type=_optional_float, default=70.0, help="low-pass edge in Hz ('none' to skip)")
    group.add_argument("--notch", type=float, nargs="*",
                       help="notch frequencies in Hz (given without a value: no notch; default: --line-freq)")
    group.add_argument("--reference", choices=["none", "average"], default="none")
    group.add_argument("--resample", type=float, default=200.0, help="target sampling rate in Hz")
    group = parser.add_argument_group("dataset options (each applies to the readers that take it)")
    group.add_argument("--subjects", type=int, nargs="+", help="subject numbers to read")
    group.add_argument("--source", help="seed-vii: 'preprocessed' (EEG_preprocessed, default) or 'raw' (EEG_raw .cnt)")
    group.add_argument("--labels", type=Path, help="folder: the CSV/TSV label table")
    group.add_argument("--label-column", help="folder: the label table's label column")
    group.add_argument("--baseline-removal", action="store_true", default=None,
                       help="deap/dreamer: subtract the pre-trial baseline's 1-s template from each second")
    group.add_argument("--label-threshold", type=float, help="deap/dreamer: high/low split of the ratings")
    group.add_argument("--target", choices=["valence", "arousal", "quadrant"],
                       help="deap/dreamer: rating that defines the classes (default valence)")
    group.add_argument("--n-subjects", type=int, help="synthetic: number of subjects")
    group.add_argument("--trial-seconds", type=float, help="synthetic: clip length in seconds")
    group.add_argument("--seed", type=int, help="synthetic: random seed")
    group.add_argument("--channels", choices=list(CHANNEL_POLICIES), dest="channel_policy",
                       help="folder: when the recordings do not share one channel set, keep the 'common' channels, "
                            "'each' file's own (absent ones stored as zeros and masked), or 'interpolate' the "
                            "absent ones; without it such files are refused")
    add_signal_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _reader_kwargs(name: str, args: argparse.Namespace) -> dict:
    """The dataset options given on the command line that the reader's constructor accepts."""
    option_to_kwarg = {"label_column": "label_column", "labels": "label_table"}
    accepted = set(inspect.signature(READERS[name].__init__).parameters)
    given = {option: getattr(args, option, None) for option in (
        "subjects", "source", "labels", "label_column", "baseline_removal", "label_threshold", "target",
        "n_subjects", "trial_seconds", "seed", "channel_policy")}
    signal = signal_options(args)
    given.update(channel_map=signal["channel_map"], montage=signal["montage"], units=signal["units"])
    kwargs, refused = {}, []
    for option, value in given.items():
        if value is None:
            continue
        kwarg = option_to_kwarg.get(option, option)
        if kwarg in accepted:
            kwargs[kwarg] = value
        else:
            refused.append("--" + {"channel_policy": "channels"}.get(option, option).replace("_", "-"))
    if refused:
        raise ValueError(f"options {refused} do not apply to dataset {name!r}")
    if "interface" in accepted:
        kwargs["interface"] = "cli"
    return kwargs


def report_lines(summary: dict) -> list[str]:
    """What ``summary.json`` says about channels and window quality, one line per file, for standard error."""
    lines = []
    channels = summary.get("channels", {})
    if channels.get("policy") not in (None, "same"):
        lines.append(f"channels: {channels['policy']} -> {len(channels['channel_names'])} channels")
    for source, entry in channels.get("files", {}).items():
        dropped = "; ".join(f"{n} ({r})" for n, r in entry.get("dropped", {}).items()) or "none"
        text = f"{source}: {len(entry.get('used', []))} channels used ({entry.get('placement')}); dropped: {dropped}"
        for key, label in (("not_kept", "not kept (not in every file)"), ("absent", "absent (zeros, masked)"),
                           ("interpolated", "interpolated")):
            if entry.get(key):
                text += f"; {label}: {', '.join(entry[key])}"
        lines.append(text)
        lines.extend(f"{source}: MNE: {warning}" for warning in entry.get("warnings", []))
    quality = summary.get("window_quality", {})
    if quality.get("windows_refused") or quality.get("channel_windows_masked"):
        masked = ", ".join(f"{n} x{c}" for n, c in quality["channel_windows_masked"].items()) or "none"
        lines.append(f"windows refused (more than half of the channels unusable): {quality['windows_refused']}; "
                     f"channels left out of windows: {masked} (details in summary.json)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``e2llm prepare``; returns 0 (bad input raises: the `e2llm` command line prints it in one line)."""
    dataset = prepare_dataset(  # errors reach the `e2llm` command line, which says them in its flags
        args.dataset,
        args.root,
        output_dir=args.output_dir,
        window_seconds=args.window_seconds,
        stride_seconds=args.stride_seconds,
        l_freq=args.l_freq,
        h_freq=args.h_freq,
        notch_freqs=None if args.notch is None else tuple(args.notch),
        line_freq=signal_options(args)["line_freq"],
        reference=None if args.reference == "none" else args.reference,
        target_sfreq=args.resample,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **_reader_kwargs(args.dataset, args),
    )
    summary = json.loads((Path(args.output_dir) / "summary.json").read_text())
    for line in report_lines(summary):
        print(f"e2llm prepare: {line}", file=sys.stderr)
    print(f"Wrote {dataset.num_rows} windows of {args.dataset} to {args.output_dir}")
    return 0


__all__ = ["add_arguments", "prepare_dataset", "report_lines", "run"]
