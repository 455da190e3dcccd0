"""What a run leaves on disk, written atomically (a temporary file, then a rename), so an
interrupted run never leaves a half-written file: history.json, the trained model and the
checkpoints directory; and the checks that make an output directory safe to use.

The model is a plain `.npz` (numpy's standard archive): one array per parameter or
batch-norm statistic, keyed by its path in the model (e.g. `params/head/hidden/0/kernel`),
plus the run's config as JSON, so it can be loaded back without regjax too.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from regjax.config import Config
from regjax.nn.models import TrainedModel, make_model, state_copies, weights_bytes

CONFIG_KEY = "__config__"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process' umask (there is no call that only reads it)
HISTORY, MODEL, CURVES, CHECKPOINTS = "history.json", "model.npz", "curves.png", "checkpoints"
RUN_FILES = (HISTORY, MODEL, CURVES, CHECKPOINTS)
LOCK = ".regjax.lock"  # held by the run using the directory (see DirectoryLock)


class OutputDirError(Exception):
    """The output directory cannot be used for this run."""


def run_bytes(config: Config, keep_checkpoints: int) -> int:
    """About how much disk a run needs: its checkpoints (every copy of the weights its state
    holds, models.state_copies; `keep_checkpoints` plus the best plus one being written) and
    the final model."""
    weights = weights_bytes(config)
    per_checkpoint = weights * state_copies(config)
    return per_checkpoint * (keep_checkpoints + 2) + weights


class DirectoryLock:
    """An exclusive lock on an output directory, held while a run uses it, so two runs never
    mix their files there. The kernel releases it when the process ends, however it ends
    (SIGKILL included); the lock file names the holder. A directory the run created and
    left holding nothing but the lock (it failed before writing anything) is removed on
    release, while the lock is still held."""

    def __init__(self, directory: Path, created: bool = False):
        self.directory, self.path, self.created = directory, directory / LOCK, created
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
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
        os.write(self._fd, f"pid {os.getpid()}: {shlex.join(sys.argv)}".encode())

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
                       owned: tuple[str, ...] = RUN_FILES) -> DirectoryLock:
    """Checks, before any training, that `path` can take this run, creates it and locks it
    for this run (release the returned lock when the run ends; the process' end does too).

    A directory that another run holds is refused. A non-empty directory is refused unless
    the run resumes from its checkpoints or is told to overwrite (which deletes only the
    files this kind of run writes, `owned`: for train.py history.json, model.npz, curves.png
    and checkpoints/). The directory must be writable and have `needed_bytes` free. A run
    whose `owned` lacks checkpoints/ cannot resume. Every check of what the directory holds
    is made under the lock, so no other run can change it in between."""
    can_resume = CHECKPOINTS in owned
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output directory {path} exists and is not a directory")
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other; choose one")
    if resume and not path.is_dir():
        raise OutputDirError(f"nothing to resume in {path}: it does not exist; run without "
                             "--resume to start a new run")
    created = not path.exists()
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
        check_output_dir(path, resume, overwrite, needed_bytes, owned, can_resume)
    except BaseException:
        lock.release(remove=True)
        raise
    return lock


def check_output_dir(path, resume, overwrite, needed_bytes, owned, can_resume) -> None:
    present = sorted(p.name for p in path.iterdir() if p.name != LOCK)
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
        raise OutputDirError(f"output directory {path} has {free / 1e6:.1f} MB free; this run "
                             f"needs about {needed_bytes / 1e6:.1f} MB for its checkpoints and "
                             "model: free some space or choose another --output-dir")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Calls write(file object) on a temporary file beside `path`, then renames it over
    `path`; on any error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)  # the rename itself survives a power cut


def fsync_directory(path: str | os.PathLike) -> None:
    """Flushes a directory's entries (a rename into it, a new file) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _flat(params: nnx.State, batch_stats: nnx.State) -> dict[tuple, np.ndarray]:
    tree = {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(batch_stats)}
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def named_arrays(params: nnx.State, batch_stats: nnx.State) -> dict[str, np.ndarray]:
    """A model's arrays under the names model.npz gives them: "params/head/hidden/0/kernel",
    "batch_stats/head/norms/0/mean", ..."""
    return {_name(k): v for k, v in _flat(params, batch_stats).items()}


def save_model(path: str | os.PathLike, model: TrainedModel) -> None:
    _, params, batch_stats = nnx.split(model.module, nnx.Param, nnx.BatchStat)
    arrays = named_arrays(params, batch_stats)
    arrays[CONFIG_KEY] = np.asarray(json.dumps(model.config.to_dict()))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_model(path: str | os.PathLike) -> TrainedModel:
    """The model a run saved (its config and weights), from a file written by save_model;
    raises ValueError naming the file if it is not one (truncated, another format, a config
    regjax cannot use, arrays that do not fit that config)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a model file written by regjax (a .npz archive; "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         ) from None
    if not isinstance(stored, dict) or CONFIG_KEY not in stored:
        raise ValueError(f"{path}: not a regjax model file (no config inside)")
    try:
        config = Config.from_dict(json.loads(str(stored.pop(CONFIG_KEY)))).validate()
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: its config cannot be used ({type(e).__name__}: {e})") from None
    graphdef, params, batch_stats = nnx.split(make_model(config), nnx.Param, nnx.BatchStat)
    expected = _flat(params, batch_stats)
    if {_name(k) for k in expected} != set(stored) or any(
            (v.shape, v.dtype) != (stored[_name(k)].shape, stored[_name(k)].dtype)
            for k, v in expected.items()):
        raise ValueError(f"{path}: its arrays (names, shapes or dtypes) do not match the model "
                         "its config describes")
    tree = traverse_util.unflatten_dict({k: jnp.asarray(stored[_name(k)]) for k in expected})
    nnx.replace_by_pure_dict(params, tree["params"])
    nnx.replace_by_pure_dict(batch_stats, tree.get("batch_stats", {}))  # none without BN
    return TrainedModel(config, nnx.merge(graphdef, params, batch_stats))
