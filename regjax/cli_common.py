"""Command-line pieces shared by train, compare and sweep: the parser that answers bad flags
in one line, the data flags, the one-line error for a failure a user can fix, and stopping
cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from regjax.data import DATASETS


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion_mnist", metavar="NAME",
                   help=f"{' or '.join(DATASETS)} (default: fashion_mnist, installable "
                        "with `apt-get install dataset-fashion-mnist`; the notebook used mnist)")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
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
    from regjax.artifacts import OutputDirError
    from regjax.checkpoint import CheckpointError
    from regjax.devices import OutOfMemory
    from regjax.idx import DataError

    return DataError, OutputDirError, CheckpointError, OutOfMemory


class StopOnSignal:
    """SIGINT and SIGTERM while training: the first asks training to stop after the current
    epoch (which is then checkpointed); a second one exits at once, leaving the checkpoints
    of the finished epochs (each is written atomically) and history.json as they are."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, prog: str):
        self.prog = prog
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f"{self.prog}: {name} again: stopping now, without the current epoch; the "
                  "checkpoints of finished epochs are intact", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        print(f"{self.prog}: {name}: finishing the current epoch, then saving it and stopping "
              "(send it again to stop at once)", file=sys.stderr, flush=True)
