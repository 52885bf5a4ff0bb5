"""Electrode positions for e2llm: MNE's 10-05 template plus SEED's cerebellar CB1/CB2.

The template is MNE's ``colin27_1005`` (called ``standard_1005`` before MNE 1.13, and
deprecated under that name since). Neither name has CB1/CB2, the two cerebellar
electrodes of the NeuroScan Quik-Cap used by the SEED datasets, which sit below O1/O2 over
the cerebellum. They are placed one 10 %-step below the inion row, continuing the line
from O1 through I1 (and O2 through I2): ``CB1 = I1 + (I1 - O1)``, ``CB2 = I2 + (I2 - O2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import mne
import numpy as np

# One template for placing electrodes (e2llm.cap_layouts_e2llm) and for montages here: new name first.
from e2llm.cap_layouts_e2llm import CEREBELLAR_PLACEMENT, TEMPLATE_NAMES, template_montage
from e2llm.electrodes import ALIASES


def cerebellar_positions(ch_pos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Positions of CB1/CB2 from the template's O1/I1 and O2/I2: `{name: (3,) array}`, metres."""
    return {
        name: 2.0 * np.asarray(ch_pos[inion_row]) - np.asarray(ch_pos[occipital])
        for name, (occipital, inion_row) in CEREBELLAR_PLACEMENT.items()
    }


def make_montage(ch_names: Sequence[str] | None = None):
    """An `mne.channels.DigMontage` with the 10-05 template, CB1 and CB2 (fiducials kept).

    Args:
        ch_names: keep only these channels (10-05 spelling; T3-T6 map to T7, T8, P7, P8 and keep
            the asked name). None keeps all of them (the 10-05 system plus CB1/CB2).

    Raises:
        ValueError: a name in `ch_names` has no position.
    """
    template, template_name = template_montage()
    positions = template.get_positions()  # a fresh copy each call: montages are mutable
    ch_pos = {name: np.asarray(pos, dtype=np.float64) for name, pos in positions["ch_pos"].items()}
    ch_pos.update(cerebellar_positions(ch_pos))
    if ch_names is not None:
        missing = [n for n in ch_names if n not in ch_pos and ALIASES.get(n) not in ch_pos]
        if missing:
            raise ValueError(f"No position for channels {missing} in the {template_name} template or CB1/CB2")
        ch_pos = {n: ch_pos[n] if n in ch_pos else ch_pos[ALIASES[n]] for n in ch_names}
    montage = mne.channels.make_dig_montage(
        ch_pos=ch_pos,
        nasion=positions["nasion"],
        lpa=positions["lpa"],
        rpa=positions["rpa"],
        coord_frame=positions["coord_frame"],
    )
    return montage


def set_montage(raw, on_missing: str = "raise"):
    """Set the e2llm montage on `raw` (an MNE Raw, Epochs or Info) in place and return it.

    Channels must already carry 10-05 names (see `e2llm.processing.recording`). `on_missing`
    is MNE's: "raise", "warn" or "ignore" for channels without a position.
    """
    raw.set_montage(make_montage(), on_missing=on_missing, verbose="error")
    return raw


__all__ = ["CEREBELLAR_PLACEMENT", "TEMPLATE_NAMES", "cerebellar_positions", "make_montage", "set_montage"]
