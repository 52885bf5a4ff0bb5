"""One writer per output folder, and no temporary file left behind: `output_lock` for `e2llm train`, `prepare`,
`evaluate`. Standard library only.

`output_lock(folder)` takes the lock file ``.NAME.e2llm-lock`` beside `folder` (an OS lock, `fcntl.flock`, released
by the kernel when the process dies, plus who holds it: pid, host, command, since when). A second writer is refused
with those details. A lock file left by a process that no longer runs is taken over, with a message, and the
temporary files that run registered (`track_temporary`) and the hidden partial folders beside `folder` are removed
then. While the lock is held, SIGTERM and SIGHUP end the run like Ctrl-C does (an exception, so every ``finally``
runs): the run's temporary files and partial folders are removed on the way out.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "prepared"
>>> with output_lock(folder, command="e2llm prepare synthetic") as lock:
...     scratch = temporary_directory("e2llm-example-")
...     scratch.is_dir(), lock.path.name
(True, '.prepared.e2llm-lock')
>>> scratch.exists(), lock.path.exists()
(False, False)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: an exclusive create of the lock file, and a pid check for stale ones
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".e2llm-lock"
_ACTIVE: list[OutputLock] = []  # locks this process holds, innermost last


class OutputFolderLocked(OSError):
    """Another e2llm run is writing the same output folder."""


def _host() -> str:
    return socket.gethostname()


def _process_start(pid: int) -> str | None:
    """When process `pid` started (Linux: field 22 of its `stat` file in procfs), to tell a reused pid apart; None
    elsewhere."""
    try:
        text = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` runs on this host (and, given its recorded `start`, is still the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    except OSError:
        return False
    return start is None or _process_start(pid) in (None, start)


def lock_path(folder) -> Path:
    """The lock file of output `folder`: ``.NAME.e2llm-lock`` in its parent, links resolved (two spellings of one
    folder share one lock)."""
    folder = Path(folder).expanduser().resolve()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid')} on host {info.get('host')}, `{info.get('command')}`, since "
            f"{info.get('since')}")


def _read_info(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class OutputLock:
    """The held lock of one output folder: `path` (the lock file), `info` (who holds it), `temporaries`."""

    def __init__(self, folder: Path, command: str):
        self.folder = Path(folder).expanduser()
        self.path = lock_path(self.folder)
        self.info = {"pid": os.getpid(), "host": _host(), "process_start": _process_start(os.getpid()),
                     "command": command, "since": time.strftime("%Y-%m-%d %H:%M:%S %z"), "temporaries": []}
        self._descriptor: int | None = None

    # ------------------------------------------------------------ taking and giving back
    def acquire(self) -> OutputLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            previous = self._acquire_flock() if fcntl is not None else self._acquire_exclusive()
        except PermissionError as error:
            raise PermissionError(error.errno, f"cannot write {self.folder}: no permission to create files in "
                                               f"{self.path.parent}; choose another output folder") from None
        if previous:
            self._clean_after(previous)
        self._write()
        return self

    def _acquire_flock(self) -> dict:
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(descriptor)
                self._refuse(_read_info(self.path))
            try:
                same = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it between our open and our lock: take the new one
                os.close(descriptor)
                continue
            self._descriptor = descriptor
            previous = _read_info(self.path)
            if previous.get("host") == _host() and previous.get("pid") != os.getpid() and pid_alive(
                    int(previous.get("pid") or 0), previous.get("process_start")):
                os.close(descriptor)  # alive but not holding the OS lock (a file system without flock): its file stays
                self._descriptor = None
                self._refuse(previous)
            return previous

    def _acquire_exclusive(self) -> dict:
        stale = {}
        for _ in range(2):
            try:
                self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                return stale
            except FileExistsError:
                previous = _read_info(self.path)
                if previous.get("host") != _host() or pid_alive(int(previous.get("pid") or 0),
                                                                previous.get("process_start")):
                    self._refuse(previous)
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                stale = previous
        self._refuse(_read_info(self.path))

    def _refuse(self, holder: dict) -> None:
        who = _describe(holder) if holder else "another process"
        hint = ""
        if holder and holder.get("host") != _host():
            hint = f" (if that run is gone, delete {self.path})"
        raise OutputFolderLocked(f"{self.folder} is being written by another e2llm run: {who}; wait for it to "
                                 f"finish or choose another output folder{hint}")

    def _clean_after(self, previous: dict) -> None:
        """Remove what a run that died while holding this lock left: its temporaries and partial folders."""
        from .safe_output import sweep_leftovers

        leftovers = [Path(p) for p in previous.get("temporaries") or [] if Path(p).exists()]
        for path in leftovers:
            _remove(path)
        partials = [p for p in self.folder.parent.glob(f".{self.folder.name}.*")
                    if re.match(rf"^\.{re.escape(self.folder.name)}\.(partial|old|tmp)-", p.name)]
        for path in partials:
            _remove(path)
        sweep_leftovers(self.folder)
        logger.warning("%s: took over the lock of a run that is no longer running (%s); removed %d file(s) it left",
                       self.folder, _describe(previous), len(leftovers) + len(partials))

    def _write(self) -> None:
        data = (json.dumps(self.info, indent=1) + "\n").encode("utf-8")
        os.lseek(self._descriptor, 0, os.SEEK_SET)
        os.ftruncate(self._descriptor, 0)
        os.write(self._descriptor, data)
        os.fsync(self._descriptor)

    def track(self, path) -> None:
        """Remove `path` when the lock is given back (and, after a kill, when the next run takes the lock)."""
        self.info["temporaries"].append(str(Path(path).resolve()))
        if self._descriptor is not None:
            self._write()

    def release(self, clean: bool = True) -> None:
        """Remove the tracked temporaries (`clean`), then the lock file, then give back the OS lock."""
        if clean:
            for path in reversed(self.info["temporaries"]):
                _remove(Path(path))
        if self._descriptor is not None:
            try:
                if _read_info(self.path).get("pid") == os.getpid() or fcntl is not None:
                    self.path.unlink(missing_ok=True)
            finally:
                os.close(self._descriptor)
                self._descriptor = None


def _rank() -> int:
    """This process's rank in a multi-process launch (accelerate, torchrun): 0 when launched alone."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM / SIGHUP while an output lock is held, so cleanup code runs."""


def _terminate(signum, frame):
    raise Terminated(128 + signum)


@contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """While in the block, SIGTERM and SIGHUP raise `Terminated` (where their handler is the default one)."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is signal.SIG_DFL:
                installed[number] = signal.signal(number, _terminate)
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)


@contextmanager
def output_lock(folder, command: str | None = None) -> Iterator[OutputLock | None]:
    """Hold the lock of output `folder` for the block (see the module docstring); yields the `OutputLock`.

    In a multi-process launch only rank 0 takes the lock (the other ranks yield None). `command` describes the
    run to a second writer (default: this process's command line).

    Raises:
        OutputFolderLocked: another running process holds the lock (its pid, host, command and start are named).
    """
    if _rank() != 0:
        yield None
        return
    lock = OutputLock(Path(folder), command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    lock.acquire()
    _ACTIVE.append(lock)
    try:
        with _signals_end_the_run():
            yield lock
    finally:
        _ACTIVE.remove(lock)
        lock.release()


def track_temporary(path) -> bool:
    """Register `path` with the innermost output lock this process holds (removed when it is given back, or by the
    next run after a kill); False when no lock is held."""
    if not _ACTIVE:
        return False
    _ACTIVE[-1].track(path)
    return True


def temporary_directory(prefix: str = "e2llm-") -> Path:
    """A new folder in the system's temporary folder, removed when the current output lock is given back (or, without
    a lock, when the process exits); folders of the same `prefix` left by dead processes of this host are removed."""
    base = Path(tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    for stale in base.glob(f"{prefix}*"):
        match = pattern.match(stale.name)
        if match and stale.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    if not track_temporary(path):
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


__all__ = ["LOCK_SUFFIX", "OutputFolderLocked", "OutputLock", "Terminated", "lock_path", "output_lock", "pid_alive",
           "temporary_directory", "track_temporary"]
