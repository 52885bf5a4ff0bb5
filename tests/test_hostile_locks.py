"""Issue 27.2: one writer per output folder; temporary files cleaned on interrupt or by the next run.

Rows: two `train` or two `prepare` runs into one folder at once both succeeded, their files interleaved; a killed
`prepare` left a 243 MB window cache and a hidden partial folder, never cleaned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import e2llm.output_lock as lock_module
from e2llm.output_lock import (
    OutputFolderLocked,
    lock_path,
    output_lock,
    temporary_directory,
    track_temporary,
)
from e2llm.safe_output import staged_dir

# how long a signalled holder may take to unwind and exit: an upper bound, seconds on a loaded machine (10 s was
# exceeded once with the suite niced beside a training run)
EXIT_SECONDS = 60

# The output modules are standard library only: a second process imports them without e2llm's package __init__
# (which imports transformers), in a fraction of the time.
LIGHT_IMPORT = textwrap.dedent(f"""
    import sys, types
    package = types.ModuleType("e2llm")
    package.__path__ = [{str(Path(lock_module.__file__).parent)!r}]
    sys.modules["e2llm"] = package
""")
# A second process that takes the lock of argv[1], makes a temporary folder and a staged (partial) output, says
# "ready", then waits to be ended.
_HOLDER = LIGHT_IMPORT + textwrap.dedent("""
    import signal, sys, time
    # Ctrl-C as at a terminal, also when the suite runs as a background job (whose shell starts it with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from e2llm.output_lock import output_lock, temporary_directory
    from e2llm.safe_output import staged_dir
    with output_lock(sys.argv[1], command="e2llm prepare synthetic --output-dir " + sys.argv[1]):
        cache = temporary_directory("e2llm-test-windows-")
        (cache / "windows.arrow").write_bytes(b"x" * 1000)
        with staged_dir(sys.argv[1], kind="prepared-dataset") as staging:
            (staging / "data-00000.arrow").write_bytes(b"y" * 1000)
            print("ready", cache, staging, flush=True)
            time.sleep(60)
""")


def _start_holder(folder: Path) -> tuple[subprocess.Popen, Path, Path]:
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().split()
    assert line and line[0] == "ready", line
    return process, Path(line[1]), Path(line[2])


def test_a_second_writer_is_refused_with_who_holds_the_folder(tmp_path):
    folder = tmp_path / "prepared"
    process, cache, _ = _start_holder(folder)
    try:
        with pytest.raises(OutputFolderLocked, match=rf"being written by another e2llm run: pid {process.pid} on "
                                                     r"host .*`e2llm prepare synthetic --output-dir .*`, since 20"):
            with output_lock(folder):
                pass
    finally:
        process.terminate()
        process.wait(EXIT_SECONDS)


def test_sigterm_removes_the_temporaries_and_the_partial_folder(tmp_path):
    folder = tmp_path / "prepared"
    process, cache, staging = _start_holder(folder)
    assert cache.is_dir() and staging.is_dir()
    process.send_signal(signal.SIGTERM)
    assert process.wait(EXIT_SECONDS) == 128 + signal.SIGTERM
    assert not cache.exists() and not staging.exists() and not lock_path(folder).exists() and not folder.exists()


def test_ctrl_c_removes_the_temporaries_and_the_partial_folder(tmp_path):
    folder = tmp_path / "prepared"
    process, cache, staging = _start_holder(folder)
    process.send_signal(signal.SIGINT)  # KeyboardInterrupt: every `finally` runs
    process.wait(EXIT_SECONDS)
    assert not cache.exists() and not staging.exists() and not lock_path(folder).exists()


def test_after_a_kill_the_next_run_takes_over_and_cleans_up(tmp_path, caplog):
    folder = tmp_path / "prepared"
    process, cache, staging = _start_holder(folder)
    process.kill()  # SIGKILL: no cleanup possible in the process itself
    process.wait(EXIT_SECONDS)
    assert cache.exists() and staging.exists() and lock_path(folder).exists()
    with caplog.at_level("WARNING"), output_lock(folder) as lock:
        assert lock.info["pid"] == os.getpid()
    assert f"pid {process.pid}" in caplog.text and "no longer running" in caplog.text
    assert not cache.exists() and not staging.exists() and not lock_path(folder).exists()


def test_a_lock_file_of_a_dead_process_without_os_lock_is_stale(tmp_path, monkeypatch, caplog):
    """Platforms without `fcntl` create the lock file exclusively and judge a left one by its pid."""
    from e2llm import output_lock as module

    monkeypatch.setattr(module, "fcntl", None)
    folder = tmp_path / "runs" / "stage1"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(folder).parent.mkdir(parents=True)
    lock_path(folder).write_text(json.dumps({"pid": int(dead.stdout), "host": module._host(), "command": "x",
                                             "since": "then", "temporaries": []}))
    with caplog.at_level("WARNING"), output_lock(folder):
        with pytest.raises(OutputFolderLocked, match=f"pid {os.getpid()}"):
            with output_lock(folder):
                pass
    assert "no longer running" in caplog.text and not lock_path(folder).exists()


def test_a_live_holder_is_respected_where_the_file_system_ignores_flock(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from e2llm import output_lock as module

    folder = tmp_path / "prepared"
    process, _, _ = _start_holder(folder)
    try:
        monkeypatch.setattr(module, "fcntl", SimpleNamespace(LOCK_EX=2, LOCK_NB=4, flock=lambda fd, op: None))
        with pytest.raises(OutputFolderLocked, match=f"pid {process.pid}"):
            with output_lock(folder):
                pass
        assert json.loads(lock_path(folder).read_text())["pid"] == process.pid  # its lock file left alone
    finally:
        process.terminate()
        process.wait(EXIT_SECONDS)


def test_locks_are_per_folder_and_given_back(tmp_path):
    with output_lock(tmp_path / "a"), output_lock(tmp_path / "b"):
        pass
    with output_lock(tmp_path / "a"):  # given back: taken again
        pass


def test_other_ranks_of_a_launch_do_not_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with output_lock(tmp_path / "runs") as lock:
        assert lock is None and not lock_path(tmp_path / "runs").exists()


def test_temporaries_without_a_lock_are_left_to_the_caller_and_swept_later(tmp_path):
    assert track_temporary(tmp_path / "x") is False
    code = LIGHT_IMPORT + ("from e2llm.output_lock import temporary_directory; import os; "
                           "p = temporary_directory('e2llm-test-sweep-'); print(p, flush=True); os._exit(0)")
    left = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())
    assert left.is_dir()  # os._exit: not even atexit ran
    fresh = temporary_directory("e2llm-test-sweep-")
    assert not left.exists() and fresh.is_dir()


def test_the_lock_records_what_to_clean(tmp_path):
    folder = tmp_path / "out"
    with output_lock(folder, command="e2llm evaluate"):
        scratch = temporary_directory("e2llm-test-record-")
        with staged_dir(folder) as staging:
            info = json.loads(lock_path(folder).read_text())
            assert str(scratch.resolve()) in info["temporaries"] and str(staging.resolve()) in info["temporaries"]
            assert info["command"] == "e2llm evaluate" and info["host"] and time.strptime(info["since"][:19],
                                                                                           "%Y-%m-%d %H:%M:%S")


_CALL_SITES = ("prepare", "train", "evaluate")  # the commands that write an output folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from e2llm.processing.prepare import prepare_dataset

    folder = tmp_path_factory.mktemp("locks") / "prepared"
    prepare_dataset("synthetic", None, output_dir=folder, n_subjects=2, trial_seconds=8.0, progress=False)
    return folder


@pytest.mark.parametrize("command", _CALL_SITES)
def test_each_writing_command_takes_the_lock(command, tmp_path, capsys, prepared, tiny_e2llm_dir):
    from e2llm.training.cli import main as cli

    folder = tmp_path / "out"
    argv = {"prepare": ["prepare", "synthetic", "--n-subjects", "1", "--trial-seconds", "8", "--output-dir",
                        str(folder), "--no-progress"],
            "train": ["train", "stage1", "--tiny", "true", "--dataset_path", str(prepared), "--max_steps", "1",
                      "--output_dir", str(folder), "--report_to", "none"],
            "evaluate": ["evaluate", "--model", str(tiny_e2llm_dir), "--data", str(prepared), "--baselines",
                         "--max-test-windows", "2", "--max-new-tokens", "2", "--output-dir", str(folder)]}[command]
    process, _, _ = _start_holder(folder)
    try:
        code = cli(argv)
        assert code == 2 and "being written by another e2llm run" in capsys.readouterr().err
    finally:
        process.terminate()
        process.wait(EXIT_SECONDS)


def test_two_spellings_of_one_folder_share_one_lock(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "runs", target_is_directory=True)
    with output_lock(tmp_path / "runs" / "stage1"):
        with pytest.raises(OutputFolderLocked):
            with output_lock(tmp_path / "alias" / "stage1"):
                pass
