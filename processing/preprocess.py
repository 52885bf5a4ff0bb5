"""Dataset preprocessing: resample, filter, re-reference and window a `Recording`, recording every parameter.

The chain is the model's feature extractor's (`e2llm.chain_e2llm`), so prepared datasets and inference inputs share
one implementation. Each call of :func:`preprocess_recording` appends a step to
``recording.provenance["steps"]`` holding all parameters, the filter actually applied (rate, taps) and the
resampling ratio, so a dataset says how it was made.

>>> import numpy as np
>>> from e2llm.processing.recording import Recording
>>> from e2llm.processing.preprocess import PreprocessingParams, preprocess_recording, window_recording
>>> rec = Recording(np.random.default_rng(0).standard_normal((2, 10_000)) * 1e-5, 1000.0, ["Fz", "Cz"], "V")
>>> params = PreprocessingParams(l_freq=1.0)
>>> out = preprocess_recording(rec, params)
>>> out.sfreq, out.data.shape, out.provenance["steps"][-1]["name"]
(200.0, (2, 2000), 'preprocess')
>>> windows, starts = window_recording(out, params)
>>> windows.shape, starts.tolist()
((2, 2, 800), [0.0, 4.0])
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from e2llm import __version__
from e2llm.chain_e2llm import ChainSettings, plan_filter, to_model_rate
from e2llm.processing.recording import Recording
from e2llm.signal_e2llm import design_filter, resample_ratio, resampled_length, sliding_windows, window_params

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


def preprocess_recording(rec: Recording, params: PreprocessingParams, filter: bool = True) -> Recording:
    """The model's signal chain up to the windows (`e2llm.chain_e2llm`, shared with the feature extractor and
    streaming): polyphase resampling to `params.target_sfreq`, then the filter (the zero-phase band-pass + notch of
    MNE's design rules, or the chain's short-input filter when the recording is shorter than that kernel), then the
    optional average reference over the non-flat channels; returns a new `Recording` (units unchanged).

    The provenance step records the parameters, the order of the steps, the filter actually applied (rate, taps, its
    description) and the resampling ratio.
    """
    data = _check_recording(rec)
    orig_sfreq, target = float(rec.sfreq), float(params.target_sfreq)
    up, down = resample_ratio(orig_sfreq, target)
    live = np.ptp(data, axis=-1) > 0
    if params.reference == "average" and not live.any():
        raise ValueError("Cannot average-reference a recording whose channels are all flat.")
    settings = ChainSettings(target, params.l_freq, params.h_freq, tuple(params.notch_freqs), params.reference,
                             params.window_seconds, params.stride_seconds, normalization="none")
    plan = plan_filter(settings, resampled_length(data.shape[-1], orig_sfreq, target), filter)
    offset = data.mean(axis=-1)
    out = to_model_rate((data - offset[:, None])[None], orig_sfreq, settings, plan, offset[None], live[None])[0]
    order = (["resample"] if up != down else []) + (["filter"] if filter else [])
    order += ["reference"] if params.reference == "average" else []
    step = {
        "name": "preprocess",
        "e2llm_version": __version__,
        "params": params.to_dict(),
        "filter_applied": bool(filter),
        "order": order,
        "filter": None if not filter else {"sfreq": target, "n_taps": int(plan.kernel.size),
                                           "description": plan.description, "phase": "zero",
                                           "pad": "reflect_limited", "fitted_to_length": plan.fitted},
        "reference": params.reference,
        "resample": {"orig_sfreq": orig_sfreq, "sfreq": target, "up": up, "down": down, "method": "polyphase"},
        "units": rec.units,
    }
    provenance = copy.deepcopy(rec.provenance)
    provenance.setdefault("steps", []).append(step)
    return replace(rec, data=out, sfreq=target, ch_names=list(rec.ch_names), provenance=provenance)


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
