"""Cap layouts whose channel labels are not 10-05 names, and placing their electrodes by position.

Some caps label electrodes by their place in the cap, not by the 10-05 system: BioSemi's ABC layouts (A1..A32,
B1..B32, ... H32 for 16 to 256 channels), EGI/Geodesic nets (E1..E257) and numbered caps ("EEG 001", "EEG001",
"1".."64", ANT's "1Z", "2L", "3RA"). A label such as BioSemi's C3 or F1 is a coincidence: it is not the 10-05
electrode of that name. `detect_layout` recognises these layouts so that the channel rule never places them by
name; `place_by_position` puts each electrode at the nearest free 10-05 site, from an MNE standard montage
(``montage="biosemi128"``) or from positions digitised in the file.

How the nearest site is found: a sphere is fitted (least squares) to the electrode positions and another to the
10-05 template (MNE's ``colin27_1005``, ``standard_1005`` before MNE 1.13, plus SEED's CB1/CB2), and each
electrode's direction from its sphere's centre is compared with each site's: the angle between them is the
distance. Sites are given out nearest pair first, each to one electrode; an electrode whose free sites all lie
farther than `PLACEMENT_TOLERANCE_DEG` is left out, with the reason. On MNE's standard caps whose labels are 10-05
names (biosemi64, easycap-M1, brainproducts-RNP-BA-128) and on two digitised real heads, 75 % of the electrodes land
on the site of their own name and the rest on a neighbouring 10-05 site (median 4 degrees, at most 12.5 degrees
from their own site): placement by position is as good as the head models agree, not exact.

BioSemi's 16-, 32- and 64-channel ABC layouts map one to one onto the 10-20 names of MNE's ``biosemi16``,
``biosemi32`` and ``biosemi64`` montages (BioSemi's documented order: A1 = Fp1, A2 = AF7, ... for 64 channels), so
with those montages ABC labels are renamed exactly, without a position search.

MNE is imported inside the functions that need it: this module ships with the model (remote code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .electrodes import ELECTRODE_NAMES, canonical_channel_name

# Largest angle (degrees) between an electrode and the 10-05 site it is placed at. Neighbouring 10-05 sites are
# 5-9 degrees apart (8.6 median to the nearest other site), so every electrode over the 10-05 grid finds a site;
# electrodes beyond it (cheeks, neck, below the ears on 256-channel nets) are left out. 8 degrees is 13 mm on a
# head of 9.5 cm radius.
PLACEMENT_TOLERANCE_DEG = 8.0
TEMPLATE_NAMES: tuple[str, ...] = ("colin27_1005", "standard_1005")
CEREBELLAR_PLACEMENT: dict[str, tuple[str, str]] = {"CB1": ("O1", "I1"), "CB2": ("O2", "I2")}
# Ear and mastoid sites are references, not cap sites: no cap electrode is placed there.
_NOT_TARGETS = {"M1", "M2", "A1", "A2"}
# BioSemi ABC montages that list 10-20 names in BioSemi's ABC order (bank A first, 32 per bank).
ABC_ORDERED_MONTAGES = ("biosemi16", "biosemi32", "biosemi64")

_ABC = re.compile(r"^([A-I])([1-9]|[12][0-9]|3[0-2])$", re.IGNORECASE)
_EGI = re.compile(r"^E([1-9][0-9]{0,2})$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(?:EEG)?[\s_-]*[0-9]{1,3}$|^[0-9]{1,2}[LRZ][A-E]?$", re.IGNORECASE)


@dataclass(frozen=True)
class CapLayout:
    """A recognised cap layout: `kind` ("BioSemi ABC", "EGI/GSN" or "numbered"), the input indices whose labels
    belong to it, and the standard montage(s) to suggest."""

    kind: str
    members: tuple[int, ...]
    suggestion: str

    def describe(self, names) -> str:
        labels = [str(names[i]) for i in self.members]
        shown = ", ".join(labels[:6]) + (f", ... {labels[-1]}" if len(labels) > 6 else "")
        return f"{len(labels)} channels labelled {shown} follow the {self.kind} cap layout"


def _abc_suggestion(names, members) -> str:
    labels = [str(names[i]).strip().upper() for i in members]
    banks = sorted({label[0] for label in labels})
    largest = max(int(label[1:]) for label in labels)
    if banks == ["A"] and largest <= 16:
        return "biosemi16"
    if banks == ["A"]:
        return "biosemi32"
    if set(banks) <= {"A", "B"}:
        return "biosemi64"
    last = banks[-1]
    return {"C": "biosemi128", "D": "biosemi128", "E": "biosemi160"}.get(last, "biosemi256")


def detect_layout(names, candidates=None) -> CapLayout | None:
    """The cap layout the labels `names` follow, or None when they are (or may be) 10-05 names.

    Args:
        names: channel labels.
        candidates: indices of the EEG channels to look at (default: all).

    BioSemi ABC is recognised from labels no 10-05 electrode has (A3-A32, banks B, D, E, G, H, I) next to at least
    16 ABC labels; its C1-C6, F1-F10, A1, A2, I1, I2 are then members too. EGI/GSN from 16 or more E-numbers
    without other banks; numbered caps when numbers label most of the EEG channels.
    """
    candidates = list(range(len(names))) if candidates is None else list(candidates)
    labels = {i: str(names[i]).strip() for i in candidates}
    abc = {i: _ABC.match(label) for i, label in labels.items()}
    abc = {i: (m.group(1).upper(), int(m.group(2))) for i, m in abc.items() if m}
    banks = {bank for bank, _ in abc.values()}
    distinctive = [i for i, (bank, number) in abc.items()
                   if bank in "BDGH" or (bank in "AI" and number >= 3) or (bank == "E" and banks != {"E"})]
    if len(abc) >= 16 and len(distinctive) >= 4:
        members = sorted(abc)
        return CapLayout("BioSemi ABC", tuple(members), _abc_suggestion(names, members))
    egi = [i for i, label in labels.items() if _EGI.match(label)]
    if len(egi) >= 16:
        largest = max(int(labels[i][1:]) for i in egi)
        net = "GSN-HydroCel-32" if largest <= 33 else "GSN-HydroCel-64_1.0" if largest <= 65 else (
            "GSN-HydroCel-128" if largest <= 129 else "GSN-HydroCel-256")
        return CapLayout("EGI/GSN", tuple(egi), net)
    numbered = [i for i, label in labels.items() if _NUMBERED.match(label)]
    if numbered and len(numbered) * 2 >= len(candidates):
        return CapLayout("numbered", tuple(numbered), "")
    return None


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """`(centre (3,), radius)` of the least-squares sphere through `points` `(n, 3)`."""
    design = np.c_[2.0 * points, np.ones(len(points))]
    solution = np.linalg.lstsq(design, (points ** 2).sum(axis=1), rcond=None)[0]
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))


def _directions(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    offsets = points - centre
    return offsets / np.linalg.norm(offsets, axis=1, keepdims=True)


@lru_cache(maxsize=1)
def template_positions() -> dict[str, np.ndarray]:
    """10-05 site positions `{name: (3,) metres}` of MNE's template (``colin27_1005`` or ``standard_1005``) plus
    CB1/CB2 (one 10 % step below I1/I2, continuing O1 -> I1 and O2 -> I2), in the template's own frame."""
    montage, _ = template_montage()
    positions = {name: np.asarray(xyz, dtype=np.float64) for name, xyz in montage.get_positions()["ch_pos"].items()}
    for name, (occipital, inion_row) in CEREBELLAR_PLACEMENT.items():
        positions[name] = 2.0 * positions[inion_row] - positions[occipital]
    return positions


def template_montage():
    """`(montage, name)`: MNE's 10-05 template montage under its current name (a fresh object each call)."""
    mne = _import_mne("placing electrodes by position")
    available = set(mne.channels.get_builtin_montages())
    for name in TEMPLATE_NAMES:
        if name in available:
            return mne.channels.make_standard_montage(name), name
    raise ValueError(f"MNE {mne.__version__} has none of the 10-05 templates {TEMPLATE_NAMES}")


@lru_cache(maxsize=1)
def _template_directions() -> tuple[tuple[str, ...], np.ndarray]:
    positions = template_positions()
    names = tuple(n for n in ELECTRODE_NAMES if n in positions and n not in _NOT_TARGETS)
    points = np.array([positions[n] for n in names])
    centre, _ = _fit_sphere(points)
    return names, _directions(points, centre)


def _import_mne(purpose: str):
    try:
        import mne
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"{purpose} needs MNE-Python: pip install mne") from error
    return mne


def montage_positions(montage) -> tuple[str, dict[str, np.ndarray]]:
    """`(name, {channel: (3,) metres})` of an MNE standard montage name or a `DigMontage`."""
    mne = _import_mne("a montage")
    if isinstance(montage, str):
        available = mne.channels.get_builtin_montages()
        lookup = {name.lower(): name for name in available}
        if montage.lower() not in lookup:
            raise ValueError(f"unknown montage {montage!r}; MNE's standard montages are: {', '.join(available)}")
        label, montage = lookup[montage.lower()], mne.channels.make_standard_montage(lookup[montage.lower()])
    elif hasattr(montage, "get_positions"):
        label = "the DigMontage given"
    else:
        raise TypeError(f"montage must be an MNE standard montage name or an mne.channels.DigMontage, got "
                        f"{type(montage).__name__}")
    positions = {str(k): np.asarray(v, dtype=np.float64) for k, v in montage.get_positions()["ch_pos"].items()}
    return label, {k: v for k, v in positions.items() if np.all(np.isfinite(v))}


def abc_names_from_montage(montage_name: str, labels) -> dict[str, str]:
    """`{label: 10-20 name}` for BioSemi ABC `labels` with MNE's biosemi16/32/64 (BioSemi's ABC order)."""
    mne = _import_mne("a montage")
    ordered = mne.channels.make_standard_montage(montage_name).ch_names
    renamed = {}
    for label in labels:
        match = _ABC.match(str(label).strip())
        if match is None:
            continue
        index = (ord(match.group(1).upper()) - ord("A")) * 32 + int(match.group(2)) - 1
        if index < len(ordered):
            renamed[label] = ordered[index]
    return renamed


def place_by_position(positions: dict[str, np.ndarray], fit_points: np.ndarray, taken=(),
                      tolerance_deg: float = PLACEMENT_TOLERANCE_DEG) -> tuple[dict[str, tuple[str, float]],
                                                                               dict[str, str]]:
    """Nearest free 10-05 site of each electrode: `(placed {label: (site, degrees)}, left_out {label: reason})`.

    Args:
        positions: `{label: (3,)}` positions of the electrodes to place (one frame, metres).
        fit_points: `(n, 3)` all positions of the cap in that frame (the sphere is fitted to them; at least 8).
        taken: sites already used (channels placed by name).
        tolerance_deg: largest electrode-to-site angle.
    """
    if len(fit_points) < 8:
        raise ValueError(f"only {len(fit_points)} electrode positions: at least 8 are needed to place electrodes "
                         "by position")
    centre, radius = _fit_sphere(np.asarray(fit_points, dtype=np.float64))
    if not 0.04 <= radius <= 0.2:
        raise ValueError(f"the electrode positions fit a sphere of radius {radius:.3g}, not a head (0.04-0.2 m): "
                         "positions must be in metres, on the scalp")
    site_names, site_dirs = _template_directions()
    labels = list(positions)
    if not labels:
        return {}, {}
    angles = np.degrees(np.arccos(np.clip(
        _directions(np.array([positions[k] for k in labels]), centre) @ site_dirs.T, -1.0, 1.0)))
    taken = set(taken)
    owner = {col: "a channel placed by name" for col, name in enumerate(site_names) if name in taken}
    placed: dict[str, tuple[str, float]] = {}
    for flat in np.argsort(angles, axis=None):
        row, col = divmod(int(flat), len(site_names))
        if angles[row, col] > tolerance_deg:
            break
        if labels[row] in placed or col in owner:
            continue
        placed[labels[row]] = (site_names[col], float(angles[row, col]))
        owner[col] = f"{labels[row]} ({angles[row, col]:.1f} degrees)"
    left_out = {}
    for row, label in enumerate(labels):
        if label not in placed:
            nearest = int(np.argmin(angles[row]))
            reason = f"no free 10-05 site within {tolerance_deg:g} degrees (nearest: {site_names[nearest]} at " \
                     f"{angles[row, nearest]:.1f} degrees"
            left_out[label] = reason + (f", taken by {owner[nearest]})" if nearest in owner else ")")
    return placed, left_out


def is_10_05_name(name) -> bool:
    return canonical_channel_name(name) is not None


__all__ = [
    "ABC_ORDERED_MONTAGES",
    "PLACEMENT_TOLERANCE_DEG",
    "TEMPLATE_NAMES",
    "CapLayout",
    "abc_names_from_montage",
    "detect_layout",
    "montage_positions",
    "place_by_position",
    "template_montage",
    "template_positions",
]
