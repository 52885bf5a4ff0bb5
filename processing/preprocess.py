"""Dataset preprocessing: filter, re-reference, resample and window a `Recording`, recording every parameter.

The kernels are those of the model's feature extractor (`e2llm.signal_e2llm`), so prepared datasets and
inference inputs share one implementation. Each call of :func:`preprocess_recording` appends a step to
``recording.provenance["steps"]`` holding all parameters, the filter actually applied (rate, taps) and the
resampling ratio, so a dataset says how it was made.

>>> import numpy as np
>>> from e2llm.processing.recording import Recording
>>> from e2llm.processing.preprocess import PreprocessingParams, preprocess_recording, window_recording
>>> rec = Recording(np.random.default_rng(0).standard_normal((2, 10_000)) * 1e-5, 1000.0, ["Fz", "Cz"], "V")
>>> params = PreprocessingParams(l_freq=1.0)  # 0.1 Hz would need a filter longer than these 10 s
>>> out = preprocess_recording(rec, params)
>>> out.sfreq, out.data.shape, out.provenance["steps"][-1]["name"]
(200.0, (2, 2000), 'preprocess')
>>> windows, starts = window_recording(out, params)
>>> windows.shape, starts.tolist()
((2, 2, 800), [0.0, 4.0])
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from e2llm import __version__
from e2llm.processing.recording import Recording
from e2llm.signal_e2llm import (
    apply_filter,
    design_filter,
    resample,
    resample_ratio,
    sliding_windows,
    window_params,
)

REFERENCES = (None, "average")


@dataclass
class PreprocessingParams:
    """How raw EEG becomes dataset windows. Frequencies in Hz, durations in seconds.

    Attributes:
        l_freq: high-pass edge (None: none). h_freq: low-pass edge (None: none); below `target_sfreq / 2`.
        notch_freqs: line-noise frequencies removed with MNE's default FIR notch.
        reference: None keeps the recording's reference; "average" re-references to the channel mean.
        target_sfreq: rate of the prepared data (the model's rate).
        window_seconds, stride_seconds: window length and step between window starts.
    """

    l_freq: float | None = 0.1
    h_freq: float | None = 70.0
    notch_freqs: tuple[float, ...] = (50.0,)
    reference: str | None = None
    target_sfreq: float = 200.0
    window_seconds: float = 4.0
    stride_seconds: float = 4.0

    def __post_init__(self):
        self.notch_freqs = tuple(float(f) for f in self.notch_freqs)
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        window_params(self.target_sfreq, self.window_seconds, self.stride_seconds)  # positive rate and windows
        # validate band and notches at the target rate, where the model sees the data
        design_filter(self.target_sfreq, self.l_freq, self.h_freq, self.notch_freqs)

    def to_dict(self) -> dict:
        """JSON-serialisable parameters (tuples become lists)."""
        out = asdict(self)
        out["notch_freqs"] = list(self.notch_freqs)
        return out

    @classmethod
    def from_dict(cls, params: dict) -> PreprocessingParams:
        """Inverse of :meth:`to_dict`; ValueError on unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown preprocessing parameters {unknown}; known: {sorted(known)}")
        return cls(**params)


def _check_recording(rec: Recording) -> np.ndarray:
    data = np.asarray(rec.data, dtype=np.float64)
    source = rec.provenance.get("source", "recording")
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"{source}: data must be a non-empty (n_channels, n_times) array, got shape {data.shape}")
    if len(rec.ch_names) != data.shape[0]:
        raise ValueError(f"{source}: {len(rec.ch_names)} channel names for {data.shape[0]} channels")
    n_bad = int((~np.isfinite(data)).sum())
    if n_bad:
        channels = [rec.ch_names[c] for c in np.nonzero(~np.isfinite(data).all(axis=1))[0]]
        raise ValueError(f"{source}: {n_bad} NaN/Inf values in channel(s) {channels}")
    if not (np.isfinite(rec.sfreq) and rec.sfreq > 0):
        raise ValueError(f"{source}: sampling rate must be positive, got {rec.sfreq}")
    return data


def _average_reference(data: np.ndarray) -> np.ndarray:
    """Subtract the mean of the non-flat channels (a dead channel would bias the reference)."""
    live = np.ptp(data, axis=-1) > 0
    if not live.any():
        raise ValueError("Cannot average-reference a recording whose channels are all flat.")
    return data - data[live].mean(axis=0, keepdims=True)


def preprocess_recording(rec: Recording, params: PreprocessingParams, filter: bool = True) -> Recording:
    """Band-pass + notch (one zero-phase FIR, MNE's design rules), optional average reference, and
    polyphase resampling to `params.target_sfreq`; returns a new `Recording` (units unchanged).

    When downsampling, the filter runs before resampling (at the original rate); when upsampling, after
    it, so the filter always runs at the higher rate and `h_freq` only has to be below the target
    Nyquist frequency. The order used is recorded in the provenance step.
    """
    data = _check_recording(rec)
    orig_sfreq, target = float(rec.sfreq), float(params.target_sfreq)
    up, down = resample_ratio(orig_sfreq, target)
    filter_first = orig_sfreq >= target
    order, filter_info = [], None

    def run_filter(x: np.ndarray, sfreq: float) -> np.ndarray:
        nonlocal filter_info
        kernel = design_filter(sfreq, params.l_freq, params.h_freq, params.notch_freqs)
        filter_info = {
            "sfreq": sfreq,
            "n_taps": int(kernel.size),
            "design": "firwin, hamming window, MNE automatic transition bandwidths and length",
            "phase": "zero",
            "pad": "reflect_limited",
        }
        order.append("filter")
        if kernel.size > x.shape[-1]:  # MNE warns too; the provenance keeps the fact with the data
            filter_info["longer_than_data"] = True
            warnings.warn(
                f"{rec.provenance.get('source', 'recording')}: filter of {kernel.size} taps is longer than the "
                f"recording ({x.shape[-1]} samples at {sfreq} Hz); edge effects dominate.",
                RuntimeWarning,
                stacklevel=3,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # warned above, with the recording's name
            return apply_filter(x, kernel)

    if filter and filter_first:
        data = run_filter(data, orig_sfreq)
    if params.reference == "average":
        data = _average_reference(data)
        order.append("reference")
    if up != down:
        data = resample(data, orig_sfreq, target)
        order.append("resample")
    if filter and not filter_first:
        data = run_filter(data, target)

    step = {
        "name": "preprocess",
        "e2llm_version": __version__,
        "params": params.to_dict(),
        "filter_applied": bool(filter),
        "order": order,
        "filter": filter_info,
        "reference": params.reference,
        "resample": {"orig_sfreq": orig_sfreq, "sfreq": target, "up": up, "down": down, "method": "polyphase"},
        "units": rec.units,
    }
    provenance = copy.deepcopy(rec.provenance)
    provenance.setdefault("steps", []).append(step)
    return replace(rec, data=data, sfreq=target, ch_names=list(rec.ch_names), provenance=provenance)


def window_recording(rec: Recording, params: PreprocessingParams) -> tuple[np.ndarray, np.ndarray]:
    """Cut a preprocessed recording into windows.

    Returns `windows` float32 `(n_windows, n_channels, n_win)` and `starts` float64 `(n_windows,)`, seconds
    from the recording's first sample. ValueError when the recording is not at `params.target_sfreq` or is
    shorter than one window.
    """
    data = _check_recording(rec)
    if not np.isclose(rec.sfreq, params.target_sfreq):
        raise ValueError(
            f"{rec.provenance.get('source', 'recording')}: recording is at {rec.sfreq} Hz, windows are cut at "
            f"target_sfreq={params.target_sfreq} Hz; run preprocess_recording first."
        )
    windows, starts = sliding_windows(data, rec.sfreq, params.window_seconds, params.stride_seconds)
    return np.ascontiguousarray(windows, dtype=np.float32), starts


__all__ = ["PreprocessingParams", "preprocess_recording", "window_recording"]
