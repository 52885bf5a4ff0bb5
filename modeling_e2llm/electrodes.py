"""Electrode vocabulary of the EEG encoder: 10-05 channel names (plus SEED's CB1/CB2).

The encoder learns one embedding per electrode in :data:`ELECTRODE_NAMES`, so a recording
with any subset of these channels, in any order, maps onto the same embeddings. Names are
matched case-insensitively (``FP1`` = ``Fp1``) and the old 10-20 temporal names are
aliases of their 10-10 positions (T3 = T7, T4 = T8, T5 = P7, T6 = P8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

# The 10-05 system as in MNE's `standard_1005` / `colin27_1005` montages (without the
# T3-T6 aliases), then SEED's cerebellar CB1/CB2, which no standard montage contains.
ELECTRODE_NAMES: tuple[str, ...] = (
    'Fp1', 'Fpz', 'Fp2', 'AF9', 'AF7', 'AF5', 'AF3', 'AF1', 'AFz', 'AF2', 'AF4', 'AF6', 'AF8',
    'AF10', 'F9', 'F7', 'F5', 'F3', 'F1', 'Fz', 'F2', 'F4', 'F6', 'F8', 'F10', 'FT9', 'FT7', 'FC5',
    'FC3', 'FC1', 'FCz', 'FC2', 'FC4', 'FC6', 'FT8', 'FT10', 'T9', 'T7', 'C5', 'C3', 'C1', 'Cz',
    'C2', 'C4', 'C6', 'T8', 'T10', 'TP9', 'TP7', 'CP5', 'CP3', 'CP1', 'CPz', 'CP2', 'CP4', 'CP6',
    'TP8', 'TP10', 'P9', 'P7', 'P5', 'P3', 'P1', 'Pz', 'P2', 'P4', 'P6', 'P8', 'P10', 'PO9', 'PO7',
    'PO5', 'PO3', 'PO1', 'POz', 'PO2', 'PO4', 'PO6', 'PO8', 'PO10', 'O1', 'Oz', 'O2', 'I1', 'Iz',
    'I2', 'AFp9h', 'AFp7h', 'AFp5h', 'AFp3h', 'AFp1h', 'AFp2h', 'AFp4h', 'AFp6h', 'AFp8h', 'AFp10h',
    'AFF9h', 'AFF7h', 'AFF5h', 'AFF3h', 'AFF1h', 'AFF2h', 'AFF4h', 'AFF6h', 'AFF8h', 'AFF10h',
    'FFT9h', 'FFT7h', 'FFC5h', 'FFC3h', 'FFC1h', 'FFC2h', 'FFC4h', 'FFC6h', 'FFT8h', 'FFT10h',
    'FTT9h', 'FTT7h', 'FCC5h', 'FCC3h', 'FCC1h', 'FCC2h', 'FCC4h', 'FCC6h', 'FTT8h', 'FTT10h',
    'TTP9h', 'TTP7h', 'CCP5h', 'CCP3h', 'CCP1h', 'CCP2h', 'CCP4h', 'CCP6h', 'TTP8h', 'TTP10h',
    'TPP9h', 'TPP7h', 'CPP5h', 'CPP3h', 'CPP1h', 'CPP2h', 'CPP4h', 'CPP6h', 'TPP8h', 'TPP10h',
    'PPO9h', 'PPO7h', 'PPO5h', 'PPO3h', 'PPO1h', 'PPO2h', 'PPO4h', 'PPO6h', 'PPO8h', 'PPO10h',
    'POO9h', 'POO7h', 'POO5h', 'POO3h', 'POO1h', 'POO2h', 'POO4h', 'POO6h', 'POO8h', 'POO10h',
    'OI1h', 'OI2h', 'Fp1h', 'Fp2h', 'AF9h', 'AF7h', 'AF5h', 'AF3h', 'AF1h', 'AF2h', 'AF4h', 'AF6h',
    'AF8h', 'AF10h', 'F9h', 'F7h', 'F5h', 'F3h', 'F1h', 'F2h', 'F4h', 'F6h', 'F8h', 'F10h', 'FT9h',
    'FT7h', 'FC5h', 'FC3h', 'FC1h', 'FC2h', 'FC4h', 'FC6h', 'FT8h', 'FT10h', 'T9h', 'T7h', 'C5h',
    'C3h', 'C1h', 'C2h', 'C4h', 'C6h', 'T8h', 'T10h', 'TP9h', 'TP7h', 'CP5h', 'CP3h', 'CP1h',
    'CP2h', 'CP4h', 'CP6h', 'TP8h', 'TP10h', 'P9h', 'P7h', 'P5h', 'P3h', 'P1h', 'P2h', 'P4h', 'P6h',
    'P8h', 'P10h', 'PO9h', 'PO7h', 'PO5h', 'PO3h', 'PO1h', 'PO2h', 'PO4h', 'PO6h', 'PO8h', 'PO10h',
    'O1h', 'O2h', 'I1h', 'I2h', 'AFp9', 'AFp7', 'AFp5', 'AFp3', 'AFp1', 'AFpz', 'AFp2', 'AFp4',
    'AFp6', 'AFp8', 'AFp10', 'AFF9', 'AFF7', 'AFF5', 'AFF3', 'AFF1', 'AFFz', 'AFF2', 'AFF4', 'AFF6',
    'AFF8', 'AFF10', 'FFT9', 'FFT7', 'FFC5', 'FFC3', 'FFC1', 'FFCz', 'FFC2', 'FFC4', 'FFC6', 'FFT8',
    'FFT10', 'FTT9', 'FTT7', 'FCC5', 'FCC3', 'FCC1', 'FCCz', 'FCC2', 'FCC4', 'FCC6', 'FTT8',
    'FTT10', 'TTP9', 'TTP7', 'CCP5', 'CCP3', 'CCP1', 'CCPz', 'CCP2', 'CCP4', 'CCP6', 'TTP8',
    'TTP10', 'TPP9', 'TPP7', 'CPP5', 'CPP3', 'CPP1', 'CPPz', 'CPP2', 'CPP4', 'CPP6', 'TPP8',
    'TPP10', 'PPO9', 'PPO7', 'PPO5', 'PPO3', 'PPO1', 'PPOz', 'PPO2', 'PPO4', 'PPO6', 'PPO8',
    'PPO10', 'POO9', 'POO7', 'POO5', 'POO3', 'POO1', 'POOz', 'POO2', 'POO4', 'POO6', 'POO8',
    'POO10', 'OI1', 'OIz', 'OI2', 'M1', 'M2', 'A1', 'A2', 'CB1', 'CB2',
)

# The 62 channels of the SEED family (ESI NeuroScan), in the order of the .mat files.
SEED_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fpz", "Fp2", "AF3", "AF4", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz",
    "C2", "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7",
    "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "PO5", "PO3", "POz", "PO4", "PO6",
    "PO8", "CB1", "O1", "Oz", "O2", "CB2",
)

ALIASES: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

_LOOKUP: dict[str, str] = {name.upper(): name for name in ELECTRODE_NAMES}
_LOOKUP.update({alias.upper(): target for alias, target in ALIASES.items()})
_INDEX: dict[str, int] = {name: i for i, name in enumerate(ELECTRODE_NAMES)}
# Decorations that recording software puts around a channel name: "EEG Fp1-REF", "Fp1-A1", "Fp1.".
_PREFIX = re.compile(r"^(EEG|EOG|ECG|EMG)[\s_:-]+", re.IGNORECASE)
_SUFFIX = re.compile(r"([\s_-]+(REF|LE|AVG|A1|A2|M1|M2|CZ)|\.+)$", re.IGNORECASE)


def canonical_channel_name(name: str) -> str | None:
    """10-05 spelling of `name` (``"FP1"`` -> ``"Fp1"``, ``"EEG T3-REF"`` -> ``"T7"``), or None."""
    key = str(name).strip()
    if key.upper() in _LOOKUP:
        return _LOOKUP[key.upper()]
    key = _SUFFIX.sub("", _PREFIX.sub("", key)).strip()
    return _LOOKUP.get(key.upper())


def electrode_ids(channel_names: Sequence[str], vocabulary: Sequence[str] = ELECTRODE_NAMES) -> np.ndarray:
    """Index of each channel in `vocabulary` (`(n_channels,)` int64), -1 where the name is unknown."""
    index = _INDEX if vocabulary is ELECTRODE_NAMES else {n: i for i, n in enumerate(vocabulary)}
    canonical = (canonical_channel_name(n) for n in channel_names)
    return np.array([index.get(c, -1) if c is not None else -1 for c in canonical], dtype=np.int64)


def find_duplicates(channel_names: Iterable[str]) -> list[str]:
    """Names that occur more than once after case folding and aliasing."""
    seen: dict[str, int] = {}
    for name in channel_names:
        key = canonical_channel_name(name) or str(name).strip().upper()
        seen[key] = seen.get(key, 0) + 1
    return [name for name, count in seen.items() if count > 1]


__all__ = ["ALIASES", "ELECTRODE_NAMES", "SEED_CHANNELS", "canonical_channel_name", "electrode_ids", "find_duplicates"]
