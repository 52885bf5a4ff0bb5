"""The shared signal options of the commands that read recordings (`e2llm.processing.signal_options`)."""

from __future__ import annotations

import argparse
import doctest

import pytest

from e2llm.processing import signal_options
from e2llm.processing.signal_options import (
    add_signal_arguments,
    parse_channel_map,
    parse_line_freq,
    parse_units,
)
from e2llm.processing.signal_options import (
    signal_options as options_of,
)


def test_channel_map_pairs_and_files(tmp_path):
    assert parse_channel_map(None) is None and parse_channel_map([]) is None
    assert parse_channel_map(["A1=Fp1", "EXG1=", " B2 = Fz "]) == {"A1": "Fp1", "EXG1": None, "B2": "Fz"}
    (tmp_path / "map.json").write_text('{"A1": "Fp1", "EXG1": null}')
    assert parse_channel_map([str(tmp_path / "map.json")]) == {"A1": "Fp1", "EXG1": None}
    (tmp_path / "map.tsv").write_text("# old\tnew\nA1\tFp1\nA2,AF7\nA3=AF3  # comment\n\n")
    assert parse_channel_map([str(tmp_path / "map.tsv")]) == {"A1": "Fp1", "A2": "AF7", "A3": "AF3"}


@pytest.mark.parametrize("values, message", [
    (["A1"], r"--channel-map: 'A1' is neither OLD=NEW nor an existing file"),
    (["A1=Fp1", "B2"], r"--channel-map: 'B2' is not OLD=NEW \(give pairs such as A1=Fp1, or one file\)"),
    (["=Fp1", "A1=Fz"], r"--channel-map: '=Fp1' is not OLD=NEW"),
    (["A1=Fp1", "A1=Fz"], r"--channel-map: channel 'A1' is mapped twice"),
])
def test_channel_map_errors(values, message):
    with pytest.raises(ValueError, match=message):
        parse_channel_map(values)


def test_channel_map_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad\.json must hold one JSON object"):
        parse_channel_map([str(tmp_path / "bad.json")])
    (tmp_path / "bad.txt").write_text("A1 Fp1\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 1: 'A1 Fp1' is not OLD=NEW \(or OLD,NEW\)"):
        parse_channel_map([str(tmp_path / "bad.txt")])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match=r"empty\.txt holds no OLD=NEW line"):
        parse_channel_map([str(tmp_path / "empty.txt")])


def test_line_freq_and_units():
    assert parse_line_freq(None) is None and parse_line_freq("60") == 60.0
    for bad in ("x", 0, -50, float("nan"), 5000):
        with pytest.raises(ValueError, match="line frequency must be"):
            parse_line_freq(bad)
    assert parse_units(None) is None and parse_units("µV") == "uV" and parse_units("mv") == "mV"
    with pytest.raises(ValueError, match=r"units must be one of V, mV, uV, got 'nV'"):
        parse_units("nV")


def test_parser_and_defaults():
    parser = argparse.ArgumentParser()
    add_signal_arguments(parser, units=False)
    args = parser.parse_args([])
    assert options_of(args) == {"channel_map": None, "montage": None, "units": None, "line_freq": None}
    with pytest.raises(SystemExit):
        parser.parse_args(["--units", "uV"])  # not offered by this command


def test_docstring_examples():
    result = doctest.testmod(signal_options)
    assert result.attempted > 0 and result.failed == 0
