"""Command-line pieces shared by train, compare and sweep: the parser that answers bad flags
in one line, the one-line error for a failure a user can fix, and stopping cleanly on Ctrl-C
or SIGTERM. (The flags themselves: regjax.cli.flags.)"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse, answering a bad flag in one line, and taking whole flag names only: a run
    records its command line, and its resume hint, merge and finished-share checks compare
    flags by name, which an abbreviation (--out for --output-dir) would defeat."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def readable_output() -> None:
    """A path typed in bytes that are not UTF-8 (Python keeps them as surrogates) is printed
    with \\x escapes, instead of ending the command in an encoding error."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def resume_command(script: str, argv: list[str]) -> str:
    """The command line that resumes the run `python script argv` started."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["python", script, *args, "--resume"])


def fail(prog: str, message: str) -> int:
    """Prints `prog: error: message` on one line; returns exit status 1."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix (data, output directory, checkpoint, memory, shares to merge,
    processes to join), answered with one line instead of a traceback. Imported late: they
    start JAX."""
    from regjax.data.idx import DataError
    from regjax.experiment.distributed import DistributedError
    from regjax.experiment.shards import MergeError
    from regjax.files.checkpoint import CheckpointError
    from regjax.files.outdir import OutputDirError
    from regjax.train.devices import OutOfMemory

    return (DataError, OutputDirError, CheckpointError, OutOfMemory, MergeError,
            DistributedError)


class StopOnSignal:
    """SIGINT and SIGTERM while training: the first asks training to stop after the current
    epoch (which is then checkpointed); a second one ends the process at once, even inside
    a compiled epoch or a compilation (the epoch in progress is lost; the checkpoints of
    finished epochs, each written atomically, and history.json stay as they are).

    Python runs a signal handler only when the main thread is back in the interpreter,
    which a compiled epoch may not be for minutes; so the signals are watched by a thread of
    their own, through the wakeup file descriptor that the interpreter writes each signal's
    number to the moment it arrives."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, prog: str):
        self.prog = prog
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        # A handler of Python's own must be set for the wakeup descriptor to be written.
        self._previous = {s: signal.signal(s, lambda signum, frame: None) for s in self.SIGNALS}
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="regjax-signals", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc):
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        os.close(self._write)  # the watcher reads the end of the pipe and returns
        self._watcher.join()
        os.close(self._read)

    def _watch(self):
        while data := os.read(self._read, 1):
            signum = data[0]
            if signum not in self.SIGNALS:
                continue
            name = signal.Signals(signum).name
            if self.signum is not None:
                print(f"{self.prog}: {name} again: stopping now, without the current epoch; "
                      "the checkpoints of finished epochs are intact", file=sys.stderr,
                      flush=True)
                os._exit(128 + signum)
            self.signum = signum
            print(f"{self.prog}: {name}: finishing the current epoch, then saving it and "
                  "stopping (send it again to stop at once, losing that epoch)",
                  file=sys.stderr, flush=True)


def stopped_message(prog: str, checkpoints: Path, resume: str) -> str:
    """What a run stopped by a signal says: the command that resumes it (before any epoch
    was saved, resuming starts from the beginning)."""
    from regjax.files.outdir import saved_epochs

    if saved_epochs(checkpoints):
        return (f"{prog}: stopped; the finished epochs are checkpointed in {checkpoints}. "
                f"Resume with:\n  {resume}")
    return (f"{prog}: stopped before any epoch ended, so nothing was saved; the same command "
            f"with --resume starts from the beginning:\n  {resume}")


def resume_notice(prog: str, checkpoints: Path) -> bool:
    """Whether `checkpoints` holds an epoch to resume from; if it does not (the run was
    stopped before its first epoch ended), says so as the run's first line: resuming then
    starts from the beginning, as Keras' BackupAndRestore does."""
    from regjax.files.outdir import saved_epochs

    if saved_epochs(checkpoints):
        return True
    if checkpoints.is_dir():
        print(f"{prog}: nothing to resume in {checkpoints} (no epoch had finished): "
              "starting from the beginning", flush=True)
    return False
