"""Readers of the public EEG emotion datasets and of plain recording folders.

Each reader is an `e2llm.processing.dataset_io.EEGDatasetReader` yielding `Trial` objects; its
module docstring is a datasheet (source, subjects, channels, rate, labels, file tree, shapes).
`get_reader(name, root, **kwargs)` builds one by its name on the `e2llm prepare` command line.

| name | reader | classes |
|---|---|---|
| ``seed-vii`` | `SEEDVIIReader` | 7 emotions |
| ``seed`` | `SEEDReader` | negative / neutral / positive |
| ``seed-iv`` | `SEEDIVReader` | neutral / sadness / fear / happiness |
| ``seed-v`` | `SEEDVReader` | disgust / fear / sadness / neutral / happiness |
| ``deap`` | `DEAPReader` | high/low valence or arousal, or quadrants |
| ``dreamer`` | `DREAMERReader` | high/low valence or arousal, or quadrants |
| ``folder`` | `FolderReader` | the label table's values |
| ``synthetic`` | `SyntheticReader` | 7 emotions (generated) |
"""

from __future__ import annotations

from e2llm.processing.readers.deap import DEAPReader
from e2llm.processing.readers.dreamer import DREAMERReader
from e2llm.processing.readers.folder import FolderReader
from e2llm.processing.readers.seed_family import SEEDIVReader, SEEDReader, SEEDVReader
from e2llm.processing.readers.seed_vii import SEEDVIIReader
from e2llm.processing.readers.synthetic import SyntheticReader

READERS: dict[str, type] = {
    "seed-vii": SEEDVIIReader,
    "seed": SEEDReader,
    "seed-iv": SEEDIVReader,
    "seed-v": SEEDVReader,
    "deap": DEAPReader,
    "dreamer": DREAMERReader,
    "folder": FolderReader,
    "synthetic": SyntheticReader,
}


def get_reader(name: str, root=None, **kwargs):
    """The reader registered as `name` (see `READERS`), built with `root` and `kwargs`."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in READERS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(READERS)}")
    if root is None and key != "synthetic":
        raise ValueError(f"dataset {key!r} needs --root, the folder holding it")
    return READERS[key](root, **kwargs)


__all__ = [
    "DEAPReader",
    "DREAMERReader",
    "FolderReader",
    "READERS",
    "SEEDIVReader",
    "SEEDReader",
    "SEEDVIIReader",
    "SEEDVReader",
    "SyntheticReader",
    "get_reader",
]
