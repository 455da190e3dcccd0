"""Shared test helpers (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from regjax import data
from regjax.config import Config, Knobs
from regjax.data import idx
from regjax.data.split import DataSpec, Split
from regjax.train import step

ROOT = Path(__file__).parents[1]
FASHION_DIR = data.DEBIAN_DIRS["fashion_mnist"]
TIMINGS = ("epoch_seconds", "compile_seconds", "train_steps_per_second")


def quiet(_: str) -> None:
    """A `log` that prints nothing."""


def without_timing(history: dict) -> dict:
    return {k: v for k, v in history.items() if k not in TIMINGS}


def write_idx_dir(directory: Path, train: Split, test: idx.Split, gz: bool = True) -> Path:
    """Writes the four IDX files of a dataset into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, (images_stem, labels_stem) in idx.IDX_FILES.items():
        s = train if split == "train" else test
        idx.write_idx(directory / (images_stem + suffix), s.images)
        idx.write_idx(directory / (labels_stem + suffix), s.labels.astype(np.uint8))
    return directory


SPEC = DataSpec((28, 28, 1), 10)  # Fashion-MNIST's


def make_program(config: Config, spec: DataSpec = SPEC):
    """(program, initial state, rest) of one model of `config` on data of `spec`, as a
    single run starts it."""
    program = step.program_of(config, spec)
    state, rest = step.initial_state(program, config)
    return program, state, rest


def loss_function(config: Config):
    """(initial state, loss(params, batch_stats, images, labels, weights, key, train)) of
    regjax.train.step.loss for `config`, with its knobs."""
    program, state, rest = make_program(config)
    knobs = Knobs.of(config)

    def loss(params, batch_stats, images, labels, weights, key=None, train=True):
        return step.loss(program, params, batch_stats, rest, images, labels, weights, key,
                         knobs, train=train)[0]

    return state, loss


def first_step(config: Config, fashion):
    """The first training step of `config` on the first 64 training rows, and a way to
    recompute its loss: (what the step reported, the uint8 images, the step's key,
    loss_of(x, mix=None) -> (loss, correct rows) of float images x in evaluation mode with
    the step's starting weights)."""
    import jax
    import jax.numpy as jnp

    from regjax import rng

    program, state, rest = make_program(config)
    knobs = Knobs.of(config)
    images, labels = fashion.train.images[:64], fashion.train.labels[:64].astype(np.int32)
    key = rng.step_key(rng.epoch_key(config.seed, 0), 0)
    _, metrics = jax.jit(step.train_step, static_argnums=0)(
        program, state, rest, images, labels, jnp.ones(64), key, knobs)

    def loss_of(x, mix=None):
        value, (_, m) = step.loss(program, state.params, state.batch_stats, rest,
                                  jnp.asarray(x, jnp.float32), labels, jnp.ones(64), None,
                                  knobs, train=False, mix=mix)
        return float(value), float(m.correct)

    return step.per_model(metrics)[0], images, key, loss_of


def regjax_steps(config: Config, state, images, labels, batches: list[np.ndarray]):
    """regjax's training steps over `batches` from `state` (padded as in run_both): the named
    arrays they end with (the moving averages with weight_ema) and each step's loss."""
    import jax

    from regjax import rng
    from regjax.files.modelfile import named_arrays

    program, _, rest = make_program(config)
    knobs = Knobs.of(config)
    train_step = jax.jit(step.train_step, static_argnums=0)
    losses = []
    for i, rows in enumerate(batches):
        slots = np.resize(np.concatenate([rows, np.arange(len(labels))]), config.batch_size)
        weights = (np.arange(config.batch_size) < len(rows)).astype(np.float32)
        state, metrics = train_step(program, state, rest, images[slots], labels[slots],
                                    weights, rng.step_key(rng.epoch_key(config.seed, 0), i),
                                    knobs)
        losses.append(step.per_model(metrics)[0]["loss"])
    params = step.final_weights(program, state.opt_state)[0][1] if config.ema else state.params
    return named_arrays(params, state.batch_stats), losses


def script(name: str, *args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Runs scripts/<name>.py as a user would; returns the finished process."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, message: str) -> bool:
    """The process failed with `message` on one line of stderr and no traceback."""
    err = result.stderr.strip()
    return (result.returncode != 0 and message in err and len(err.splitlines()) == 1
            and "Traceback" not in err)
