"""DEAP and SEED-V pickles are loaded with an allow-list: a crafted file never runs code."""

import os
import pickle

import numpy as np
import pytest

from e2llm.processing.readers import get_reader
from e2llm.processing.readers._safe_pickle import UnsafePickleError, safe_loads, safe_npz_entry


class _Payload:
    """Unpickling this calls os.system: it would create `marker` if the loader resolved arbitrary globals."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_arrays_and_containers_round_trip():
    content = {"data": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": [1, 2.5, "x", (3,)], "n": 3}
    for protocol in (2, 3, 4, 5):
        out = safe_loads(pickle.dumps(content, protocol=protocol))
        np.testing.assert_array_equal(out["data"], content["data"])
        assert out["data"].dtype == np.float32 and out["labels"] == content["labels"] and out["n"] == 3


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        safe_loads(pickle.dumps({"data": _Payload(marker)}, protocol=protocol))
    assert not marker.exists()


def test_malicious_deap_file_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "DEAP" / "data_preprocessed_python"
    folder.mkdir(parents=True)
    with open(folder / "s01.dat", "wb") as handle:
        pickle.dump({"data": _Payload(marker), "labels": np.ones((40, 4))}, handle, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"s01\.dat.*not a numpy array or a plain container"):
        list(get_reader("deap", tmp_path / "DEAP"))
    assert not marker.exists()


def test_malicious_seed_v_features_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "EEG_DE_features"
    folder.mkdir()
    (tmp_path / "EEG_raw").mkdir()
    np.savez(folder / "1_123.npz", data=pickle.dumps({0: _Payload(marker)}), label=pickle.dumps({0: 1}))
    with pytest.raises(UnsafePickleError, match=r"1_123\.npz\['data'\]"):
        list(get_reader("seed-v", tmp_path).features())
    assert not marker.exists()
    # an object array inside the archive (numpy pickles it) goes through the same allow-list
    payload = np.empty((), dtype=object)
    payload[()] = {0: _Payload(marker)}
    np.savez(folder / "1_123.npz", data=payload, label=payload)
    with pytest.raises(UnsafePickleError):
        list(get_reader("seed-v", tmp_path).features())
    assert not marker.exists()


def test_npz_entries(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.arange(4.0).reshape(2, 2), b=np.frombuffer(b"abc", dtype="S3"))
    np.testing.assert_array_equal(safe_npz_entry(path, "x"), np.arange(4.0).reshape(2, 2))
    assert bytes(safe_npz_entry(path, "b")[0]) == b"abc"
    with pytest.raises(KeyError):
        safe_npz_entry(path, "missing")
