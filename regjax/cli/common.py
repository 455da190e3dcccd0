"""Command-line pieces shared by train, compare and sweep: the parser that answers bad flags
in one line, the data flags, the one-line error for a failure a user can fix, and stopping
cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from regjax.data import DATASETS


class Parser(argparse.ArgumentParser):
    """argparse, answering a bad flag in one line, and taking whole flag names only: a run
    records its command line, and its resume hint, merge and finished-share checks compare
    flags by name, which an abbreviation (--out for --output-dir) would defeat."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def directory(text: str) -> Path:
    """A directory flag's value: an empty one is refused (it would mean the current
    directory, where --overwrite deletes files)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty name (use . for "
                                         "the current directory)")
    return Path(text)


def given_twice(values: list) -> list:
    """The values that occur more than once in `values`, sorted: a setting listed twice
    would count its seeds twice in one group of a report."""
    return sorted({v for v in values if values.count(v) > 1})


def add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion_mnist", metavar="NAME",
                   help=f"{' or '.join(DATASETS)} (default: fashion_mnist, installable "
                        "with `apt-get install dataset-fashion-mnist`; the notebook used mnist)")
    p.add_argument("--data-dir", type=directory, metavar="DIR",
                   help="directory with the four IDX files (train-images-idx3-ubyte[.gz], ...) "
                        "or a prepared TFDS data dir; default: search the TFDS data dir, "
                        "Debian's dataset package, then download")
    p.add_argument("--no-download", action="store_true",
                   help="never try to download the dataset")
    g = p.add_argument_group("data regime (drawn from each run's seed; see docs/techniques.md)")
    g.add_argument("--train-size", type=int, metavar="N",
                   help="train on a random N of the training rows, drawn before the "
                        "validation split (which then takes the last 20%% of the N); default: "
                        "all")
    g.add_argument("--label-noise", type=float, metavar="P",
                   help="replace each training label, with probability P, by a random other "
                        "class (validation and test labels stay clean); default 0")


def regime_overrides(args: argparse.Namespace) -> dict:
    """The data regime flags that were given, as Config fields."""
    return {name: getattr(args, name) for name in ("train_size", "label_noise")
            if getattr(args, name) is not None}


def resume_command(script: str, argv: list[str]) -> str:
    """The command line that resumes the run `python script argv` started."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["python", script, *args, "--resume"])


def fail(prog: str, message: str) -> int:
    """Prints `prog: error: message` on one line; returns exit status 1."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix (data, output directory, checkpoint, memory), answered with
    one line instead of a traceback. Imported late: they start JAX."""
    from regjax.data.idx import DataError
    from regjax.files.artifacts import OutputDirError
    from regjax.files.checkpoint import CheckpointError
    from regjax.train.devices import OutOfMemory

    return DataError, OutputDirError, CheckpointError, OutOfMemory


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


def saved_epochs(checkpoints: Path) -> bool:
    """Whether `checkpoints` (or a batch directory in it) holds a finished checkpoint."""
    return any(p.name.isdigit() for p in [*checkpoints.glob("*"), *checkpoints.glob("*/*")])


def stopped_message(prog: str, checkpoints: Path, resume: str) -> str:
    """What a run stopped by a signal says: the command that resumes it, or, before any
    epoch was saved, that there is nothing to resume."""
    if saved_epochs(checkpoints):
        return (f"{prog}: stopped; the finished epochs are checkpointed in {checkpoints}. "
                f"Resume with:\n  {resume}")
    return (f"{prog}: stopped before any epoch ended: nothing was saved. Run the command again "
            "(without --resume) to start over")
