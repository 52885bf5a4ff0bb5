"""`e2llm prepare`: read a dataset folder into labelled windows saved with `datasets.save_to_disk`.

>>> from e2llm.processing.prepare import prepare_dataset
>>> ds = prepare_dataset("synthetic", None, n_subjects=1, trial_seconds=8.0, progress=False)
>>> ds.num_rows, ds[0]["eeg"].__len__(), ds.features["emotion"].names[0]
(160, 62, 'happiness')

Command line (the same, saved with ``summary.json``)::

    e2llm prepare seed-vii --root /data/SEED-VII --output-dir prepared/seed-vii
    e2llm prepare deap --root /data/DEAP --output-dir prepared/deap --baseline-removal
    e2llm prepare folder --root my_eeg/ --labels my_eeg/labels.csv --output-dir prepared/mine
    e2llm prepare synthetic --n-subjects 2 --trial-seconds 12 --output-dir prepared/synthetic
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from e2llm.processing.dataset_io import (
    DATASET_UNITS,
    load_prepared,
    save_prepared,
    trial_windows,
    windows_to_dataset,
)
from e2llm.processing.preprocess import PreprocessingParams
from e2llm.processing.readers import READERS, get_reader
from e2llm.processing.safe_output import check_output_dir
from e2llm.processing.synthetic import read_synthetic_marker


def _preprocessing_summary(params: PreprocessingParams, steps: list | None, filtered: bool) -> dict:
    """The ``preprocessing`` metadata entry: parameters, whether the chain filtered, one trial's steps."""
    return {
        "params": params.to_dict(),
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
    notch_freqs=(50.0,),
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
            only resampled / re-referenced.
        overwrite: replace an existing non-empty `output_dir`, only if e2llm wrote it (its marker file); an
            `output_dir` that is or contains `root`, or a plain file, is always refused.
        progress: show a tqdm bar over the reader's files.
        cache_dir: where the Arrow file is written before saving (default: a temporary folder).
        **reader_kwargs: passed to the reader (e.g. ``subjects=[1, 2]``, ``source="raw"``).

    Raises:
        ValueError / FileNotFoundError: bad parameters or a bad dataset file (the message names it).
        FileExistsError: `output_dir` is not empty and `overwrite` is False.
    """
    params = PreprocessingParams(
        l_freq=l_freq, h_freq=h_freq, notch_freqs=tuple(notch_freqs or ()), reference=reference,
        target_sfreq=target_sfreq, window_seconds=window_seconds, stride_seconds=stride_seconds,
    )
    if output_dir is not None:  # fail before reading anything; never delete the input or a folder not ours
        output_dir = check_output_dir(output_dir, inputs=[root, *_input_paths(reader_kwargs)], overwrite=overwrite)
    reader = get_reader(name, root, **reader_kwargs)
    items = reader.items()
    channel_names = list(reader.channel_names)
    metadata = {
        "dataset": reader.name,
        "sampling_rate": float(params.target_sfreq),
        "channel_names": channel_names,
        "units": DATASET_UNITS,
        "label_column": "emotion",
        "label_names": list(reader.label_names),
        "window_seconds": float(params.window_seconds),
        "stride_seconds": float(params.stride_seconds),
        "preprocessing": _preprocessing_summary(params, None, False),
        "source": reader.describe(),
        "rating_columns": list(reader.rating_columns),
    }
    generated = read_synthetic_marker(root)
    if generated is not None:  # files from e2llm's generator in a real dataset's layout: never call them that dataset
        metadata.update(dataset="synthetic", synthetic=True, source={**metadata["source"], **generated})
    counts = {"trials": 0, "trials_without_window": []}

    def chunks():
        from tqdm.auto import tqdm

        steps, filtered = None, False
        bar = tqdm(items, desc=f"prepare {reader.name}", unit="file", disable=not progress)
        for item in bar:
            for trial in reader.read_item(item):
                counts["trials"] += 1
                chunk = trial_windows(trial, params, channel_names)
                if chunk is None:
                    counts["trials_without_window"].append([trial.subject, trial.session, trial.trial])
                    continue
                provenance = chunk.pop("provenance")
                filtered = filtered or bool(provenance.get("steps", [{}])[-1].get("filter_applied"))
                steps = steps or provenance.get("steps")
                yield chunk
        metadata["preprocessing"] = _preprocessing_summary(params, steps, filtered)

    dataset = windows_to_dataset(chunks(), metadata, cache_dir=cache_dir)
    if output_dir is None:
        return dataset
    extra = {"n_trials_read": counts["trials"], "trials_without_window": counts["trials_without_window"]}
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        save_prepared(dataset, output_dir, summary=extra, overwrite=overwrite)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return load_prepared(output_dir)


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
    group.add_argument("--notch", type=float, nargs="*", default=[50.0], help="line frequencies (none: no notch)")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _reader_kwargs(name: str, args: argparse.Namespace) -> dict:
    """The dataset options given on the command line that the reader's constructor accepts."""
    option_to_kwarg = {"label_column": "label_column", "labels": "label_table"}
    accepted = set(inspect.signature(READERS[name].__init__).parameters)
    kwargs, refused = {}, []
    for option in ("subjects", "source", "labels", "label_column", "baseline_removal", "label_threshold", "target",
                   "n_subjects", "trial_seconds", "seed"):
        value = getattr(args, option, None)
        if value is None:
            continue
        kwarg = option_to_kwarg.get(option, option)
        if kwarg in accepted:
            kwargs[kwarg] = value
        else:
            refused.append("--" + option.replace("_", "-"))
    if refused:
        raise ValueError(f"options {refused} do not apply to dataset {name!r}")
    return kwargs


def run(args: argparse.Namespace) -> int:
    """Run ``e2llm prepare``; returns 0, or 2 with a message on stderr for bad input."""
    try:
        dataset = prepare_dataset(
            args.dataset,
            args.root,
            output_dir=args.output_dir,
            window_seconds=args.window_seconds,
            stride_seconds=args.stride_seconds,
            l_freq=args.l_freq,
            h_freq=args.h_freq,
            notch_freqs=tuple(args.notch or ()),
            reference=None if args.reference == "none" else args.reference,
            target_sfreq=args.resample,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            **_reader_kwargs(args.dataset, args),
        )
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"e2llm prepare: error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {dataset.num_rows} windows of {args.dataset} to {args.output_dir}")
    return 0


__all__ = ["add_arguments", "prepare_dataset", "run"]
