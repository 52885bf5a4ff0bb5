"""The one channel rule: which channels of an input are EEG the model can use, under which 10-05 name, and why the
others are left out.

Arrays, MNE `Raw`/`Epochs` and recording files all go through `select_channels`, so the same data give the same
channels whichever way they come in (a `Raw` whose Fp1 is typed ``eog`` and the same data saved as FIF and read
back both leave Fp1 out, saying "MNE type eog"). The rule, in order:

1. `channel_map` (``{old: new}``) renames channels first; a new name must be a 10-05 name (None drops the channel).
2. Left out, each with its reason: channels in `bads`, channels whose MNE type is not ``eeg``, channels whose name
   says they are not EEG (EOG, ECG, EMG, reference, trigger, DC and other sensors, whatever their type).
3. Channels whose label is a 10-05 name (any case, ``EEG Fp1-REF`` decorations, T3-T6 aliases) keep that name.
4. Cap layouts whose labels are not 10-05 names (BioSemi ABC, EGI/GSN, numbered; `e2llm.cap_layouts_e2llm`) are
   never placed by a coincidental name: with `montage` or digitised `positions` each electrode goes to the nearest
   free 10-05 site within a tolerance; without them, a `ValueError` gives the exact remedy in the words of
   `interface` (``montage="biosemi64"`` / ``--montage biosemi64``, ``channel_map=`` / ``--channel-map``).
5. Any other label is left out as "not a 10-05 name".

The result, a `ChannelSelection`, lists what is used and what is left out with the reason; every result of the
pipeline carries it (``"channels": {"used": [...], "dropped": {...}, "placement": ...}``).

>>> sel = select_channels(["Fp1", "FP2", "VEOG", "Cz"], types=["eeg", "eeg", "eeg", "eeg"], bads=["Cz"])
>>> sel.names, sel.dropped
(['Fp1', 'Fp2'], {'VEOG': 'name says EOG', 'Cz': "marked bad (info['bads'])"})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .cap_layouts_e2llm import (
    ABC_ORDERED_MONTAGES,
    PLACEMENT_TOLERANCE_DEG,
    CapLayout,
    abc_names_from_montage,
    detect_layout,
    montage_positions,
    place_by_position,
)
from .channel_quality_e2llm import unusable_channels
from .electrodes import canonical_channel_name, find_duplicates

# Non-EEG channels recognised by name (upper case, after stripping), whatever type the file gives them.
_NAMED_KINDS = {
    "eog": {"VEO", "HEO", "VEOG", "HEOG", "HEOL", "HEOR", "VEOU", "VEOL", "EOG", "LOC", "ROC", "LEOG", "REOG", "IEOG"},
    "ecg": {"ECG", "EKG"},
    "emg": {"EMG"},
    "ref": {"M1", "M2", "A1", "A2", "REF", "GND", "GROUND", "RERF", "RE-REF", "REREF"},
    "stim": {"STATUS", "TRIGGER", "TRIG", "STIM", "EVENT", "EVENTS", "MARKER", "MARKERS", "STI 014", "STI014"},
    "misc": {"GSR", "EDA", "RESP", "RESPIRATION", "PLETHYSMOGRAPH", "PPG", "BVP", "TEMP", "TEMPERATURE", "SPO2",
             "SAO2", "PULSE", "HR", "ACCX", "ACCY", "ACCZ", "PHOTIC", "LIGHT"},
}
_NAME_PATTERNS = (
    ("eog", re.compile(r"^[HVLRI]?EOG|EOG[HVLR]?$|^[HV]EO[LRUD]?$")),
    ("ecg", re.compile(r"^(ECG|EKG)|(ECG|EKG)$")),
    ("emg", re.compile(r"^EMG|EMG$")),
    ("stim", re.compile(r"^STI\s?\d+$|^(STATUS|TRIGGER)|^DIG\s")),
    ("dc", re.compile(r"^\$?DC\s?\d+$")),
    ("ref", re.compile(r"^REF([\s_-]|$)")),
    ("misc", re.compile(r"^(SAO2|SPO2|ACC|GYRO|ERGO)|^(PG|X)\d+$|^\$")),
)
KIND_REASONS = {
    "eog": "name says EOG", "ecg": "name says ECG", "emg": "name says EMG", "ref": "name says reference electrode",
    "stim": "name says trigger/stimulus channel", "dc": "name says DC channel", "misc": "name says non-EEG sensor",
}
BAD_REASON = "marked bad (info['bads'])"
UNKNOWN_REASON = "not a 10-05 name"


@dataclass(frozen=True)
class ChannelSelection:
    """Which channels of an input are used, under which 10-05 names, and why the others are left out.

    Attributes:
        picks: indices into the input's channels that are used, in input order.
        names: the 10-05 spelling of each used channel (same order as `picks`).
        dropped: input channel name -> reason it is left out ("marked bad (info['bads'])", "MNE type eog",
            "name says ECG", "not a 10-05 name", "flat", ...).
        placement: how names were resolved ("10-05 names", "channel_map", "montage biosemi64 (by position)",
            "digitised positions", joined with " + " when several apply).
        renamed: input name -> 10-05 name for the used channels whose label changed (placed, mapped or respelled),
            with the angle to the site for placements by position, e.g. ``{"A1": "Fp1", "E36": "C3 (3.1 deg)"}``.
    """

    picks: list[int]
    names: list[str]
    dropped: dict[str, str]
    placement: str
    renamed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The ``"channels"`` entry of a result: ``{"used", "dropped", "placement"}`` (+ ``"renamed"``)."""
        out = {"used": list(self.names), "dropped": dict(self.dropped), "placement": self.placement}
        if self.renamed:
            out["renamed"] = dict(self.renamed)
        return out

    def without(self, reasons: dict[int, str], source: str = "the input") -> ChannelSelection:
        """This selection less the used channels `reasons` names (`{position in picks: reason}`), reasons added.

        ValueError when no channel would be left."""
        if not reasons:
            return self
        keep = [k for k in range(len(self.picks)) if k not in reasons]
        if not keep:
            listing = "; ".join(f"{self.names[k]}: {r}" for k, r in sorted(reasons.items())[:6])
            more = f"; and {len(reasons) - 6} more" if len(reasons) > 6 else ""
            raise ValueError(f"{source}: no EEG channel left to use ({listing}{more})")
        dropped = dict(self.dropped)
        dropped.update({self.names[k]: reason for k, reason in reasons.items()})
        return replace(self, picks=[self.picks[k] for k in keep], names=[self.names[k] for k in keep],
                       dropped=dropped)


def channel_kind(name: str, mne_type: str = "eeg") -> str:
    """What a channel records, from its name first (Neuroscan files call VEO/HEO/ECG "eeg"), then its MNE type:
    "eeg", "eog", "ecg", "emg", "ref", "stim", "dc" or "misc"."""
    key = re.sub(r"\s+", " ", str(name).strip().upper())
    key = re.sub(r"^(EEG|POL)\s+(?=\S)", "", key) if not re.match(r"^(EEG|POL)\s+\d+$", key) else key
    key = re.sub(r"[\s_-]*(REF|LE|AVG)$", "", key) or key
    for kind, names in _NAMED_KINDS.items():
        if key in names:
            return kind
    for kind, pattern in _NAME_PATTERNS:
        if pattern.search(key):
            return kind
    if mne_type == "eeg":
        return "eeg"
    return {"eog": "eog", "ecg": "ecg", "emg": "emg", "stim": "stim"}.get(mne_type, "misc")


def _drop_reason(name: str, mne_type: str | None, bads: set[str], judge_name: bool) -> str | None:
    """Why a channel is not EEG, or None. Names are not judged for channels renamed by `channel_map` (the user
    said what they are) or labelled by a cap layout (BioSemi's A1, A2 are scalp electrodes)."""
    if name in bads:
        return BAD_REASON
    if mne_type is not None and mne_type != "eeg":
        return f"MNE type {mne_type}"
    if not judge_name:
        return None
    kind = channel_kind(name)
    return None if kind == "eeg" else KIND_REASONS[kind]


def _check_inputs(names, types, bads, source: str) -> tuple[list[str], list[str | None], set[str]]:
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise TypeError(f"{source}: channel names must be a list of strings, got {type(names).__name__}")
    names = [str(n) for n in names]
    if types is None:
        types = [None] * len(names)
    elif len(types) != len(names):
        raise ValueError(f"{source}: {len(types)} channel types for {len(names)} channel names")
    return names, [None if t is None else str(t) for t in types], {str(b) for b in (bads or ())}


def _check_channel_map(channel_map, names: list[str], source: str, interface: str) -> dict[int, str | None]:
    """`{input index: new name or None}` from `{old: new}`; ValueError for unknown old names or bad new names."""
    if not channel_map:
        return {}
    option = "--channel-map" if interface == "cli" else "channel_map"
    if not isinstance(channel_map, dict):
        raise TypeError(f"{option} must map channel names to 10-05 names, got {type(channel_map).__name__}")
    exact = {n: i for i, n in enumerate(names)}
    folded: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        folded.setdefault(n.strip().upper(), []).append(i)
    mapping, missing, invalid = {}, [], []
    for old, new in channel_map.items():
        old = str(old)
        index = exact.get(old)
        if index is None and len(folded.get(old.strip().upper(), [])) == 1:
            index = folded[old.strip().upper()][0]
        if index is None:
            missing.append(old)
            continue
        if new is None or str(new).strip() == "":
            mapping[index] = None
        elif canonical_channel_name(str(new)) is None:
            invalid.append(f"{old}={new}")
        else:
            mapping[index] = canonical_channel_name(str(new))
    if missing:
        raise ValueError(f"{option} names channels that {source} does not have: {missing}; its channels are "
                         f"{names}")
    if invalid:
        raise ValueError(f"{option}: new names must be 10-05 electrode names (e.g. Fp1, Cz, PO8); not: {invalid}")
    return mapping


def _remedy(layout: CapLayout | None, interface: str) -> str:
    """How to name or place channels that no name resolves, in the words of `interface`."""
    cli = interface == "cli"
    if layout is not None and layout.suggestion:
        montage = f"--montage {layout.suggestion}" if cli else f'montage="{layout.suggestion}"'
        montage += " (or the montage of your cap)"
    else:
        montage = ("--montage NAME" if cli else 'montage="NAME"') + (
            " with the MNE standard montage of your cap (e.g. mgh60 for EEG001..., easycap-M10 for 1, 2, ...)")
    rename = "--channel-map FILE or --channel-map OLD=NEW ..." if cli else 'channel_map={"old": "new", ...}'
    return f"pass {montage} to place them by position, or {rename} to rename them to 10-05 names"


def _resolve_by_montage(montage, names, unresolved, taken, renamed, context):
    """Place `unresolved` channels with `montage`: `(resolved {index: name}, dropped {name: reason}, method)`."""
    label, montage_pos = montage_positions(montage)
    if isinstance(montage, str) and label in ABC_ORDERED_MONTAGES:
        exact = abc_names_from_montage(label, [names[i] for i in unresolved])
        if exact:
            resolved = {i: exact[names[i]] for i in unresolved if names[i] in exact}
            renamed.update({names[i]: n for i, n in resolved.items()})
            dropped = {names[i]: f"not in montage {label}" for i in unresolved if i not in resolved}
            return resolved, dropped, f"montage {label} (BioSemi ABC order)"
    lookup = {re.sub(r"[\s_-]", "", k).upper(): k for k in montage_pos}
    matched = {i: lookup.get(re.sub(r"[\s_-]", "", names[i]).upper()) for i in unresolved}
    points = {names[i]: montage_pos[k] for i, k in matched.items() if k is not None}
    resolved, dropped = _place(points, list(montage_pos.values()), names, unresolved, taken, renamed,
                               f"the positions of montage {label}", context)
    dropped.update({names[i]: f"not in montage {label}" for i, k in matched.items() if k is None})
    return resolved, dropped, f"montage {label} (by position)"


def _place(points, fit, names, unresolved, taken, renamed, what, context):
    source, interface, layout = context
    try:
        placed, left_out = place_by_position(points, fit, taken=taken)
    except ValueError as error:
        raise ValueError(f"{source}: cannot place channels by {what}: {error}; "
                         + _remedy(layout, interface)) from None
    resolved = {i: placed[names[i]][0] for i in unresolved if names[i] in placed}
    renamed.update({names[i]: f"{placed[names[i]][0]} ({placed[names[i]][1]:.1f} deg)" for i in resolved})
    return resolved, {names[i]: left_out[names[i]] for i in unresolved if names[i] in left_out}


def _by_position(names, unresolved, taken, positions, montage, renamed, context):
    """`(resolved, dropped, method)` for channels no name resolves, from `montage` or digitised `positions`."""
    if montage is not None:
        return _resolve_by_montage(montage, names, unresolved, taken, renamed, context)
    points = {names[i]: positions[names[i]] for i in unresolved if names[i] in positions}
    resolved, dropped = _place(points, list(positions.values()), names, unresolved, taken, renamed,
                               "the digitised positions", context)
    dropped.update({names[i]: "no digitised position" for i in unresolved if names[i] not in points})
    return resolved, dropped, "digitised positions"


def _clean_positions(positions) -> dict[str, object]:
    import numpy as np

    if not positions:
        return {}
    out = {str(k): np.asarray(v, dtype=np.float64).reshape(-1)[:3] for k, v in dict(positions).items()}
    return {k: v for k, v in out.items() if v.shape == (3,) and np.all(np.isfinite(v)) and np.any(v != 0)}


def select_channels(names, types=None, bads=(), positions=None, channel_map=None, montage=None,
                    source: str = "the input", interface: str = "python") -> ChannelSelection:
    """The EEG channels of an input under their 10-05 names, and the others with the reason (module docstring).

    Args:
        names: channel labels, in input order.
        types: MNE channel types (``raw.get_channel_types()``); None for arrays (every channel is a candidate).
        bads: labels marked bad (``info["bads"]``).
        positions: digitised positions `{label: (x, y, z)}` in metres (one frame), e.g. from the file's montage.
        channel_map: `{old label: 10-05 name or None}`, applied first.
        montage: an MNE standard montage name (``"biosemi64"``, ``"GSN-HydroCel-129"``) or a `DigMontage`, for caps
            whose labels are not 10-05 names.
        source: what to call the input in messages (a file path, "raw_eeg").
        interface: "python" or "cli": the words the remedies use.

    Raises:
        ValueError: no usable EEG channel, duplicate names after renaming, a bad `channel_map`, or a cap layout
            that needs a montage (the message gives the remedy).
    """
    names, types, bads = _check_inputs(names, types, bads, source)
    mapping = _check_channel_map(channel_map, names, source, interface)
    eeg_typed = [i for i, t in enumerate(types) if names[i] not in bads and t in (None, "eeg") and i not in mapping]
    layout = detect_layout(names, eeg_typed)  # before the name checks: BioSemi's A1/A2 are cap electrodes
    members = set(layout.members) if layout is not None else set()
    dropped: dict[str, str] = {}
    candidates = []
    for i, (name, mne_type) in enumerate(zip(names, types)):
        reason = _drop_reason(name, mne_type, bads, judge_name=i not in mapping and i not in members)
        if reason is None and i in mapping and mapping[i] is None:
            reason = "dropped by channel_map"
        if reason is None:
            candidates.append(i)
        else:
            dropped[name] = reason
    resolved = {i: mapping[i] for i in candidates if mapping.get(i)}
    methods = ["channel_map"] if resolved else []
    renamed = {names[i]: n for i, n in resolved.items() if n != names[i]}
    by_name = {i: canonical_channel_name(names[i]) for i in candidates if i not in resolved and i not in members}
    by_name = {i: n for i, n in by_name.items() if n is not None}
    unresolved = [i for i in candidates if i not in resolved and i not in by_name]
    if by_name:
        resolved.update(by_name)
        methods.append("10-05 names")
        renamed.update({names[i]: n for i, n in by_name.items() if n != names[i]})
    positions = _clean_positions(positions)
    if unresolved and (montage is not None or any(names[i] in positions for i in unresolved)):
        placed, left_out, method = _by_position(names, unresolved, set(resolved.values()), positions, montage,
                                                renamed, (source, interface, layout))
        resolved.update(placed)
        dropped.update(left_out)
        methods.append(method)
    elif members:
        raise ValueError(f"{source}: {layout.describe(names)}, not 10-05 names, so they cannot be placed by name; "
                         + _remedy(layout, interface))
    else:
        dropped.update({names[i]: UNKNOWN_REASON for i in unresolved})
    return _finish(names, resolved, dropped, methods, renamed, source, interface)


def _finish(names, resolved, dropped, methods, renamed, source, interface) -> ChannelSelection:
    if not resolved:
        listing = "; ".join(f"{n}: {r}" for n, r in list(dropped.items())[:12])
        more = f" (and {len(dropped) - 12} more)" if len(dropped) > 12 else ""
        option = "--channel-map" if interface == "cli" else "channel_map"
        hint = (f"; if some are EEG electrodes, name them with {option} (or place them with "
                f"{'--montage' if interface == 'cli' else 'montage='})" if UNKNOWN_REASON in dropped.values() else "")
        raise ValueError(f"{source}: no EEG channel left to use among {len(names)} channels ({listing}{more}){hint}")
    picks = sorted(resolved)
    chosen = [resolved[i] for i in picks]
    duplicates = find_duplicates(chosen)
    if duplicates:
        given = {d: [names[i] for i in picks if resolved[i] == d] for d in duplicates}
        option = "--channel-map" if interface == "cli" else "channel_map"
        raise ValueError(f"{source}: channels {given} all resolve to the same 10-05 electrode; rename or drop all "
                         f"but one with {option}, or mark the others bad")
    return ChannelSelection(picks=picks, names=chosen, dropped=dropped, placement=" + ".join(methods),
                            renamed={k: v for k, v in renamed.items() if k in {names[i] for i in picks}})


__all__ = [
    "BAD_REASON",
    "KIND_REASONS",
    "PLACEMENT_TOLERANCE_DEG",
    "UNKNOWN_REASON",
    "ChannelSelection",
    "channel_kind",
    "select_channels",
    "unusable_channels",
]
