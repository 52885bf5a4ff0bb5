"""Loading the pickles that DEAP and SEED-V ship without ever running code from them.

`pickle.load` calls any importable function a file names, so a crafted ``s01.dat`` could run anything.
`safe_load` / `safe_loads` use an unpickler whose `find_class` resolves only an allow-list: numpy arrays,
dtypes and scalars, and plain containers (dict, list, tuple, set, ...). Any other global is refused with
`UnsafePickleError` before it is even imported.

>>> import pickle, numpy as np
>>> safe_loads(pickle.dumps({"data": np.arange(3.0)}, protocol=2))["data"].tolist()
[0.0, 1.0, 2.0]
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

# (module, name) pairs a dataset pickle may name: numpy array reconstruction (numpy 1 and 2 spellings,
# Python 2 and 3 pickles) and builtin containers. Nothing here can run code chosen by the file.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(module, "_reconstruct") for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(module, "scalar") for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [(module, name) for module in ("builtins", "__builtin__")
       for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "complex", "int", "float",
                    "str", "bool")]
    + [("collections", "OrderedDict")]
)


class UnsafePickleError(ValueError):
    """A pickle names a global outside `ALLOWED_GLOBALS` (it could run code); nothing was executed."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"the pickle refers to {module}.{name}, which is not a numpy array or a plain container; "
                "refusing to load it (a data file must hold only arrays, numbers, strings and dicts/lists)"
            )
        return super().find_class(module, name)


def safe_load(handle, encoding: str = "latin1"):
    """Unpickle from a binary file `handle`, resolving only `ALLOWED_GLOBALS`; `encoding` for Python-2 pickles."""
    return _AllowListUnpickler(handle, encoding=encoding).load()


def safe_loads(data: bytes, encoding: str = "latin1"):
    """`safe_load` of a bytes object."""
    return safe_load(io.BytesIO(bytes(data)), encoding=encoding)


def safe_npz_entry(path: str | Path, key: str):
    """Entry `key` of an ``.npz`` archive; object arrays (stored as pickles) go through `safe_load`.

    Raises:
        KeyError: no such entry. UnsafePickleError: the entry's pickle names a disallowed global.
    """
    with zipfile.ZipFile(path) as archive:
        member = f"{key}.npy"
        if member not in archive.namelist():
            raise KeyError(key)
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            if not dtype.hasobject:
                data = np.frombuffer(handle.read(), dtype=dtype, count=int(np.prod(shape)))
                return data.reshape(shape, order="F" if fortran else "C")
            array = safe_load(handle)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}['{key}']: expected an array, got {type(array).__name__}")
    return array


__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load", "safe_loads", "safe_npz_entry"]
