"""The output directory of a run: the names of what each kind of run writes there, and
the checks and lock that make the directory safe to use (empty, or this run's own files to
resume or overwrite; room on the disk; no other run using it)."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import sys
from pathlib import Path

from regjax.files.atomic import UMASK, atomic_write

HISTORY, MODEL, CURVES, CHECKPOINTS = "history.json", "model.npz", "curves.png", "checkpoints"
RUN_FILES = (HISTORY, MODEL, CURVES, CHECKPOINTS)  # train.py's
PLAN = "plan.json"  # in an experiment's checkpoints/: what plan made them
RESULTS, REPORT, SUMMARY, SWEEP_PLOT = "results.json", "report.md", "summary.png", "sweep.png"
MAP, RESPONSE = "map.png", "response.png"  # a study's
EXPERIMENT_FILES = (RESULTS, REPORT, CURVES, SUMMARY, SWEEP_PLOT, MAP, RESPONSE,
                    CHECKPOINTS)  # compare, sweep, study
LOCK = ".regjax.lock"  # held by the run using the directory (see DirectoryLock)


class OutputDirError(Exception):
    """The output directory cannot be used for this run."""


def saved_epochs(checkpoints: Path) -> bool:
    """Whether `checkpoints` (or a batch directory in it) holds a finished checkpoint."""
    return any(p.name.isdigit() for p in [*checkpoints.glob("*"), *checkpoints.glob("*/*")])


class DirectoryLock:
    """An exclusive lock on an output directory, held while a run uses it, so two runs never
    mix their files there. The kernel releases it when the process ends, however it ends
    (SIGKILL included); the lock file names the holder. A directory the run created and
    left holding nothing but the lock (it failed before writing anything) is removed on
    release, while the lock is still held."""

    def __init__(self, directory: Path, created: bool = False):
        self.directory, self.path, self.created = directory, directory / LOCK, created
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 4096).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise OutputDirError(f"output directory {directory} is in use by another run "
                                 f"({holder}); wait for it to end or choose another "
                                 "--output-dir") from None
        except OSError as e:  # e.g. a network file system without locks
            os.close(self._fd)
            raise OutputDirError(f"cannot lock output directory {directory} ({e.strerror or e}:"
                                 " its file system does not support locks); choose an "
                                 "--output-dir on a local disk") from None
        os.ftruncate(self._fd, 0)
        # surrogateescape: a path in the command line that is not UTF-8 is written as given.
        os.write(self._fd, f"pid {os.getpid()}: {shlex.join(sys.argv)}".encode(
            errors="surrogateescape"))

    def release(self, remove: bool = False) -> None:
        """Releases the lock; with `remove` (a run that failed in a directory it created),
        deletes the directory first, whatever it holds."""
        if self._fd is None:
            return
        try:
            if remove and self.created:
                shutil.rmtree(self.directory, ignore_errors=True)
            elif self.created and [p.name for p in self.directory.iterdir()] == [LOCK]:
                self.path.unlink()
                self.directory.rmdir()
        except OSError:
            pass  # left in place; the lock goes with the descriptor all the same
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None


def prepare_output_dir(path: Path, *, resume: bool, overwrite: bool, needed_bytes: int,
                       owned: tuple[str, ...] = RUN_FILES, models: int = 1) -> DirectoryLock:
    """Checks, before any training, that `path` can take this run, creates it and locks it
    for this run (release the returned lock when the run ends; the process' end does too).

    A directory that another run holds is refused. A non-empty directory is refused unless
    the run resumes from its checkpoints or is told to overwrite (which deletes only the
    files this kind of run writes, `owned`: for train.py history.json, model.npz, curves.png
    and checkpoints/). The directory must be writable and have `needed_bytes` free (for
    `models` models: the refusal says how many of them would fit). A run
    whose `owned` lacks checkpoints/ cannot resume. Every check of what the directory holds
    is made under the lock, so no other run can change it in between."""
    can_resume = CHECKPOINTS in owned
    try:
        os.fspath(path).encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8, which Python keeps as surrogates
        raise OutputDirError(f"output directory {path}: its name is not UTF-8 text, which the "
                             "checkpoints cannot record; choose another --output-dir") from None
    try:  # a name the file system refuses (too long, say) fails here
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as e:
        raise OutputDirError(f"cannot use output directory {path}: {e.strerror or e}; choose "
                             "another --output-dir") from None
    if exists and not is_dir:
        raise OutputDirError(f"output directory {path} exists and is not a directory")
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other; choose one")
    if resume and not is_dir:
        raise OutputDirError(f"nothing to resume in {path}: it does not exist; run without "
                             "--resume to start a new run")
    created = not exists
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"cannot write to output directory {path}: "
                             f"{e.strerror or e}") from None
    try:
        lock = DirectoryLock(path, created)
    except OutputDirError:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    except OSError as e:
        raise OutputDirError(f"cannot write to output directory {path}: "
                             f"{e.strerror or e}") from None
    try:
        if resume and not (path / CHECKPOINTS).is_dir():
            raise OutputDirError(f"nothing to resume in {path}: it has no {CHECKPOINTS}/ "
                                 "directory; run without --resume to start a new run")
        check_output_dir(path, resume, overwrite, needed_bytes, owned, can_resume, models)
    except BaseException:
        lock.release(remove=True)
        raise
    return lock


def check_output_dir(path, resume, overwrite, needed_bytes, owned, can_resume,
                     models: int = 1) -> None:
    present = sorted(p.name for p in path.iterdir() if p.name != LOCK)
    theirs = [name for name in present if name in {*RUN_FILES, *EXPERIMENT_FILES} - {*owned}]
    if theirs and (resume or overwrite):  # train.py's run where a report goes, or the reverse
        raise OutputDirError(f"output directory {path} holds another kind of run "
                             f"({', '.join(theirs)}): {'--resume' if resume else '--overwrite'} "
                             "would mix this run's files with it; choose another --output-dir")
    if present and not (resume or overwrite):
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        choices = "--resume to continue its run, --overwrite" if can_resume else "--overwrite"
        raise OutputDirError(f"output directory {path} is not empty ({shown}); pass {choices} "
                             "to replace it, or choose another --output-dir")
    try:
        if overwrite:
            for name in owned:
                target = path / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        atomic_write(path / ".write-test", lambda f: f.write(b"regjax"))
        (path / ".write-test").unlink()
        free = shutil.disk_usage(path).free
    except OSError as e:
        raise OutputDirError(f"cannot write to output directory {path}: "
                             f"{e.strerror or e}") from None
    if free < needed_bytes:
        fit = "" if models == 1 else (f"; about {free * models // needed_bytes:,} of its "
                                      f"{models:,} models fit: train fewer (seeds, values, "
                                      "regimes),")
        raise OutputDirError(f"output directory {path} has {free / 1e6:.1f} MB free; this run "
                             f"needs about {needed_bytes / 1e6:.1f} MB for its checkpoints and "
                             f"model{fit}: free some space or choose another --output-dir")


