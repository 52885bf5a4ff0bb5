"""Benchmark: how well placing electrodes by position finds their 10-05 site, and what the channel checks cost
(prints JSON).

    python bench/bench_channel_placement.py

Placement: caps whose electrodes carry 10-05 names (MNE's standard montages, and two real heads whose positions
were digitised: tests/fixtures/real/fif/bv_dig_raw.fif and eeglab/test_raw_chanloc.set) are relabelled "1", "2", ...
so their names say nothing, then placed by position (`e2llm.channels_e2llm.select_channels`); each placed electrode
is compared with its true name: share placed, share on its own site, and for the others the angle (degrees, from
the template's sphere centre) between the site it got and its own site (median, and the largest over all).
Costs: `select_channels` on 64 names and on a 128-channel ABC cap with a montage; `unusable_channels` on one 4-s
window of 62 channels at 200 Hz.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from e2llm.cap_layouts_e2llm import _fit_sphere, template_positions
from e2llm.channel_quality_e2llm import unusable_channels
from e2llm.channels_e2llm import select_channels

REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"


def _site_angle(a: str, b: str, centre: np.ndarray) -> float:
    positions = template_positions()
    u, v = positions[a] - centre, positions[b] - centre
    return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))


def placement(positions: dict[str, np.ndarray]) -> dict:
    """Relabel `positions` (10-05 names -> xyz) with numbers, place them, compare with the true names."""
    sites = template_positions()
    names = [n for n in positions if n in sites and n not in ("A1", "A2", "M1", "M2")]  # a 10-05 site to compare
    numbered = {str(k + 1): positions[n] for k, n in enumerate(names)}
    selection = select_channels(list(numbered), positions=numbered)
    centre, _ = _fit_sphere(np.array(list(template_positions().values())))
    truth = [names[p] for p in selection.picks]
    errors = [_site_angle(got, true, centre) for got, true in zip(selection.names, truth)]
    return {"electrodes": len(names), "placed": len(selection.names),
            "own_site_share": round(float(np.mean([g == t for g, t in zip(selection.names, truth)])), 3),
            "elsewhere_median_deg_to_own_site": round(float(np.median([e for e in errors if e > 0.5])), 1),
            "max_deg_to_own_site": round(float(np.max(errors)), 1)}


def _timed(call, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> dict:
    import mne

    results = {"placement": {}, "cost_ms": {}}
    for name in ("biosemi64", "easycap-M1", "brainproducts-RNP-BA-128"):
        montage = mne.channels.make_standard_montage(name)
        results["placement"][name] = placement(montage.get_positions()["ch_pos"])
    for path in ("fif/bv_dig_raw.fif", "eeglab/test_raw_chanloc.set"):
        raw = mne.io.read_raw(REAL / path, verbose="error")
        positions = {k: np.asarray(v) for k, v in raw.get_montage().get_positions()["ch_pos"].items()
                     if np.all(np.isfinite(v)) and k not in ("ECG", "HEOG", "VEOG")}
        results["placement"][f"digitised head: {path}"] = placement(positions)
    ten_ten = mne.channels.make_standard_montage("biosemi64").ch_names
    abc = [f"{'ABCD'[k // 32]}{k % 32 + 1}" for k in range(128)]
    select_channels(abc, montage="biosemi128")  # builds the cached template once
    results["cost_ms"]["select_channels, 64 10-05 names"] = round(_timed(lambda: select_channels(ten_ten), 200), 3)
    results["cost_ms"]["select_channels, 128 ABC labels + montage biosemi128"] = round(
        _timed(lambda: select_channels(abc, montage="biosemi128"), 20), 2)
    window = np.round(np.cumsum(np.random.default_rng(0).normal(0, 2, (62, 800)), axis=1), 1)
    results["cost_ms"]["unusable_channels, 62 x 4 s at 200 Hz"] = round(
        _timed(lambda: unusable_channels(window, 200.0), 200), 3)
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
