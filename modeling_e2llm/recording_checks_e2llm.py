"""Checks on a recording file before MNE opens it: files a header points at, and EDF/BDF header plausibility.

A recording can lie. A BrainVision header names its data and marker files (``DataFile=``, ``MarkerFile=``), an
EEGLAB ``.set`` its ``.fdt``: MNE joins that name to the header's folder, so ``../../etc/passwd`` or an absolute path
is read as EEG. `check_referenced_files` refuses, before MNE opens anything, a referenced file that is not a plain
file name beside the header (or is missing, or is a link leading out of the folder).

An EDF/BDF header states, per channel, the digital and physical ranges that turn stored integers into volts, the
samples per record, and for the file the record duration and count. `read_edf_header` parses it (the EDF
specification's fixed-width ASCII fields) and `edf_header_report` judges it:

- file problems (the recording is refused): a record duration of 0 or less (the sampling rate is undefined), a
  header length or channel count that contradicts itself, fields that are not numbers; and, refused as damaged,
  a data part shorter than the records the header declares (`truncated`);
- channel problems (that channel is left out, with the reason): digital minimum not below the maximum (the
  scaling is undefined), physical minimum = maximum (every sample reads the same), a digital range beyond the
  format's integers, no samples per record, a voltage range beyond +-1 V (no EEG amplifier has it: the ranges or
  the units are wrong);
- notes (reported with the recording's warnings): bytes after the last declared record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from scipy.io import loadmat, whosmat

_BRAINVISION_KEYS = ("DataFile", "MarkerFile")
_UNITS_UV = {"uv": 1.0, "µv": 1.0, "\u03bcv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
MAX_EEG_RANGE_UV = 1e6  # +-1 V
# Byte layout of an EDF/BDF signal header block: field name -> width (in the order they are stored).
_SIGNAL_FIELDS = (("label", 16), ("transducer", 80), ("dimension", 8), ("physical_min", 8), ("physical_max", 8),
                  ("digital_min", 8), ("digital_max", 8), ("prefilter", 80), ("samples", 8), ("reserved", 32))


def _check_beside(header: Path, name: str, what: str) -> None:
    """ValueError unless `name` is a plain file name of an existing file in `header`'s folder."""
    folder = header.parent.resolve()
    target = header.parent / name
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{header}: {what} {name!r} is not a file name beside the header; e2llm reads only data "
                         f"files in the recording's own folder ({folder}). Put the file there and name it without "
                         "a folder")
    if not target.is_file():
        raise ValueError(f"{header}: {what} {name!r} is not found beside the header in {folder}; copy it there "
                         "(recordings are read as a set of files from one folder)")
    if target.resolve().parent != folder:
        raise ValueError(f"{header}: {what} {name!r} is a link to {target.resolve()}, outside the recording's "
                         f"folder {folder}; copy the file itself there")


def _brainvision_references(header: Path) -> dict[str, str]:
    try:
        text = header.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise ValueError(f"cannot read {header}: {error}") from error
    found = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(DataFile|MarkerFile)\s*=\s*(.*?)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# An old-style .set (one EEG struct) whose samples live in a .fdt holds only metadata (channel locations, events, ICA
# weights): a few MB. A larger one holds its samples itself, and loading its struct here and again in MNE would double
# the cost of reading it. (Newer .set files keep `data` as a top-level variable, read alone.)
_EEGLAB_METADATA_BYTES = 64 * 2**20


def _eeglab_data_file(path: Path) -> str | None:
    """The data file name an EEGLAB ``.set`` refers to (None when the samples are inside the ``.set``)."""
    try:
        variables = {name: cls for name, _, cls in whosmat(path)}
        if "EEG" in variables and path.stat().st_size > _EEGLAB_METADATA_BYTES:
            return None  # an old-style .set this large holds its samples in its EEG struct
        if "EEG" in variables:
            data = getattr(loadmat(path, variable_names=["EEG"], squeeze_me=True, struct_as_record=False)["EEG"],
                           "data", None)
        elif variables.get("data") == "char":
            data = loadmat(path, variable_names=["data"], squeeze_me=True)["data"]
        else:
            return None
    except NotImplementedError:  # MATLAB v7.3 (HDF5): MNE reads it with h5py; look with h5py when there is one
        return _eeglab_data_file_hdf5(path)
    except Exception as error:  # scipy raises several types for a file that is no MATLAB file
        raise ValueError(f"cannot read {path} as an EEGLAB .set file: {type(error).__name__}: {error}") from error
    return str(data) if isinstance(data, str) else None


def _eeglab_data_file_hdf5(path: Path) -> str | None:
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{path} is a MATLAB v7.3 (HDF5) .set file; reading it needs h5py: pip install h5py") \
            from None
    with h5py.File(path, "r") as handle:
        node = handle.get("EEG/data") if "EEG" in handle else handle.get("data")
        # MATLAB stores a char array as uint16 codes of shape (n, 1); samples are a float matrix
        if node is None or not hasattr(node, "dtype") or node.dtype.kind != "u" or 1 not in node.shape:
            return None
        return "".join(chr(int(code)) for code in node[()].ravel())


def check_referenced_files(path: str | os.PathLike) -> None:
    """ValueError when a BrainVision header or an EEGLAB ``.set`` refers to a data or marker file that is not a
    plain file beside it (see the module docstring). Other formats pass."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".vhdr", ".ahdr"):
        for key, value in _brainvision_references(path).items():
            if key == "MarkerFile" and not value:
                continue
            _check_beside(path, value, f"{key}=")
    elif suffix == ".set":
        name = _eeglab_data_file(path)
        if name is not None:
            _check_beside(path, name, "its data file (EEG.data)")


@dataclass
class EDFHeader:
    """The fields of an EDF/BDF header that scale and locate the samples (one entry per signal)."""

    bdf: bool
    header_bytes: int
    n_records: int
    record_seconds: float
    labels: list[str]
    dimensions: list[str]
    physical_min: list[float]
    physical_max: list[float]
    digital_min: list[int]
    digital_max: list[int]
    samples: list[int]
    problems: list[str] = field(default_factory=list)


def _number(text: bytes, kind, where: str, problems: list[str]):
    value = text.decode("latin-1").strip()
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        problems.append(f"{where} is {value!r}, not a number")
        return kind(0)


def read_edf_header(path: str | os.PathLike) -> EDFHeader:
    """Parse an EDF/EDF+/BDF header (fixed-width ASCII fields); unparsable numbers go into `problems`."""
    path = Path(path)
    with open(path, "rb") as handle:
        fixed = handle.read(256)
        problems: list[str] = []
        if len(fixed) < 256:
            raise ValueError(f"{path} is too short to hold an EDF/BDF header ({len(fixed)} bytes)")
        n_signals = _number(fixed[252:256], int, "the channel count (bytes 252-255)", problems)
        if problems or n_signals <= 0:
            raise ValueError(f"{path}: EDF/BDF header: {problems[0] if problems else f'{n_signals} channels'}; "
                             "the file is damaged or not EDF/BDF")
        block = handle.read(256 * n_signals)
    if len(block) < 256 * n_signals:
        raise ValueError(f"{path}: the EDF/BDF header declares {n_signals} channels but the file ends inside the "
                         "header; the file is truncated")
    columns, offset = {}, 0
    for name, width in _SIGNAL_FIELDS:
        columns[name] = [block[offset + width * i: offset + width * (i + 1)] for i in range(n_signals)]
        offset += width * n_signals
    labels = [c.decode("latin-1").strip() for c in columns["label"]]

    def per_channel(name, kind):
        return [_number(v, kind, f"{name.replace('_', ' ')} of channel {labels[i]!r}", problems)
                for i, v in enumerate(columns[name])]

    return EDFHeader(
        bdf=fixed[:1] == b"\xff", labels=labels,
        header_bytes=_number(fixed[184:192], int, "the header length (bytes 184-191)", problems),
        n_records=_number(fixed[236:244], int, "the record count (bytes 236-243)", problems),
        record_seconds=_number(fixed[244:252], float, "the record duration (bytes 244-251)", problems),
        dimensions=[c.decode("latin-1").strip() for c in columns["dimension"]],
        physical_min=per_channel("physical_min", float), physical_max=per_channel("physical_max", float),
        digital_min=per_channel("digital_min", int), digital_max=per_channel("digital_max", int),
        samples=per_channel("samples", int), problems=problems,
    )


@dataclass
class EDFHeaderReport:
    """What an EDF/BDF header says about the recording: refusals, channels to leave out, notes, ranges."""

    file_problems: list[str]
    channel_problems: dict[str, str]
    notes: list[str]
    ranges_uv: dict[str, tuple[float, float]]
    truncated: str | None = None


def _channel_problem(header: EDFHeader, i: int) -> str | None:
    low, high = (-8388608, 8388607) if header.bdf else (-32768, 32767)
    dmin, dmax, pmin, pmax = header.digital_min[i], header.digital_max[i], header.physical_min[i], \
        header.physical_max[i]
    if header.samples[i] <= 0:
        return f"EDF header: {header.samples[i]} samples per record"
    if dmin >= dmax:
        return f"EDF header: digital minimum ({dmin}) is not below the maximum ({dmax}): the scaling is undefined"
    if dmin < low or dmax > high:
        return (f"EDF header: digital range {dmin}..{dmax} is beyond the {'24' if header.bdf else '16'}-bit "
                f"integers the file stores ({low}..{high})")
    if pmin == pmax:
        return f"EDF header: physical minimum = maximum ({pmin:g}): every sample would read {pmin:g}"
    scale = _UNITS_UV.get(header.dimensions[i].lower())
    if scale is not None and max(abs(pmin), abs(pmax)) * scale > MAX_EEG_RANGE_UV:
        return (f"EDF header: physical range {pmin:g}..{pmax:g} {header.dimensions[i]} is beyond any EEG "
                "amplifier's (+-1 V): the ranges or the units in the header are wrong")
    return None


def edf_header_report(path: str | os.PathLike) -> EDFHeaderReport:
    """Judge an EDF/BDF header (see the module docstring); `ranges_uv` are the channels' physical limits in uV."""
    path = Path(path)
    header = read_edf_header(path)
    problems = list(header.problems)
    data_channels = [i for i, label in enumerate(header.labels) if "annotations" not in label.lower()]
    expected_header = 256 * (len(header.labels) + 1)
    if header.header_bytes != expected_header:
        problems.append(f"the header length field says {header.header_bytes} bytes where {len(header.labels)} "
                        f"channels take {expected_header}")
    if header.record_seconds <= 0:
        problems.append(f"the record duration is {header.record_seconds:g} s (bytes 244-251), so the sampling "
                        "rate is undefined")
    notes, truncated = [], None
    record_bytes = sum(max(n, 0) for n in header.samples) * (3 if header.bdf else 2)
    data_bytes = path.stat().st_size - expected_header
    if not problems and record_bytes > 0 and header.n_records >= 0:
        held = data_bytes // record_bytes
        if held < header.n_records:
            truncated = (f"the header declares {header.n_records} records but the file holds {held} (and "
                         f"{data_bytes % record_bytes} bytes of a partial one)")
        elif data_bytes > header.n_records * record_bytes:
            notes.append(f"{path.name}: {data_bytes - header.n_records * record_bytes} bytes after the "
                         f"{header.n_records} records the header declares are ignored")
    channel_problems, ranges = {}, {}
    for i in data_channels:
        reason = _channel_problem(header, i)
        if reason is not None:
            channel_problems[header.labels[i]] = reason
            continue
        scale = _UNITS_UV.get(header.dimensions[i].lower())
        if scale is not None:
            ranges[header.labels[i]] = (header.physical_min[i] * scale, header.physical_max[i] * scale)
    return EDFHeaderReport(problems, channel_problems, notes, ranges, truncated)


__all__ = ["EDFHeader", "EDFHeaderReport", "check_referenced_files", "edf_header_report", "read_edf_header"]
