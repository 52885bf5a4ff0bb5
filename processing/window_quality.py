"""Windows of prepared data whose raw samples cannot be EEG: channels left out of a window, or the window refused.

`e2llm prepare` checks every window on the trial's raw samples (before filtering, which smears a clipped plateau)
with `e2llm.channel_quality_e2llm.unusable_channels`: flat, stuck (at the amplifier's limit), clipped or saturated
channels. A window where more than half of the channels are unusable is refused (not written); otherwise the
unusable channels are set to zero in that window, which the feature extractor masks (a constant channel gets mask
0), so the encoder never sees them. `WindowQuality` counts both and keeps examples for ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from e2llm.channel_quality_e2llm import unusable_channels
from e2llm.processing.recording import UNIT_SCALES, Recording

MAX_EXAMPLES = 50


def window_problems(recording: Recording, starts, window_seconds: float) -> list[dict[str, str]]:
    """Per window starting at `starts` (seconds), `{channel: reason}` for its unusable channels."""
    scale = UNIT_SCALES[recording.units] / 1e-6  # to microvolts
    ranges = recording.provenance.get("ranges_uv")
    n = int(round(window_seconds * recording.sfreq))
    found = []
    for start in np.asarray(starts, dtype=np.float64):
        first = int(round(start * recording.sfreq))
        segment = recording.data[:, first:first + n] * scale
        if segment.shape[1] < 2:
            found.append({})
            continue
        problems = unusable_channels(segment, recording.sfreq, ranges)
        found.append({recording.ch_names[k]: reason for k, reason in problems.items()})
    return found


@dataclass
class WindowQuality:
    """What the window checks did over a dataset: refused windows, channels left out of windows, examples."""

    windows_refused: int = 0
    channel_windows_masked: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)

    def apply(self, chunk: dict, problems: list[dict[str, str]], channel_names, where: dict) -> dict | None:
        """Mask or refuse the windows of `chunk` (``eeg`` `(n_windows, n_channels, n_times)`) by `problems`."""
        index = {name: i for i, name in enumerate(channel_names)}
        present = chunk.get("present")
        n_present = len(channel_names) if present is None else int(np.sum(present))
        keep = []
        for w, found in enumerate(problems):
            if not found:
                keep.append(w)
                continue
            refused = 2 * len(found) > n_present
            if refused:
                self.windows_refused += 1
            else:
                chunk["eeg"][w, [index[name] for name in found]] = 0.0
                keep.append(w)
                for name in found:
                    self.channel_windows_masked[name] = self.channel_windows_masked.get(name, 0) + 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append({**where, "start": float(chunk["start"][w]),
                                      "action": "window refused" if refused else "channels left out",
                                      "channels": dict(found)})
        if len(keep) == len(problems):
            return chunk
        if not keep:
            return None
        chunk["eeg"], chunk["start"] = chunk["eeg"][keep], np.asarray(chunk["start"])[keep]
        return chunk

    def as_dict(self) -> dict:
        return {"windows_refused": self.windows_refused, "channel_windows_masked": dict(self.channel_windows_masked),
                "examples": list(self.examples),
                "rule": "a window is refused when more than half of its channels are unusable (flat, stuck, clipped "
                        "or saturated in its raw samples); otherwise those channels are set to zero in it (masked)"}


__all__ = ["WindowQuality", "window_problems"]
