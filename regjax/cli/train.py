"""`python scripts/train.py`: train one technique (or any combination of knobs), print one
line per epoch, write history.json, curves.png, checkpoints and the trained model; resume a
run that was interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import platform
import sys
from pathlib import Path

from regjax import data
from regjax.cli.common import (
    Parser,
    StopOnSignal,
    add_data_flags,
    directory,
    fail,
    resume_command,
    stopped_message,
    user_errors,
)
from regjax.config import PRESETS, TECHNIQUES, Config, preset

DEFAULTS = Config()
PROG = "train.py"


def techniques_help() -> str:
    """The presets' summaries, as the epilogue of --help lists them."""
    width = max(map(len, PRESETS))
    return "\n".join(f"  {name:<{width}}  {p.summary}"
                     for name, p in PRESETS.items())


EPILOG = """\
techniques (the notebook's set-ups; every flag below overrides its preset):
""" + techniques_help() + """

examples:
  python scripts/train.py --technique dropout --dataset fashion_mnist
  python scripts/train.py --technique dropout --l2 1e-4 --augment --epochs 5
  python scripts/train.py --technique baseline --data-dir ~/mnist-idx --dataset mnist
  python scripts/train.py --technique early_stopping --resume   # after Ctrl-C or a crash

interrupting and resuming:
  A checkpoint is written to <output-dir>/checkpoints after every epoch. The first Ctrl-C
  (SIGINT) or SIGTERM finishes the current epoch, saves it and stops; a second one stops at
  once, keeping the checkpoints of the finished epochs. Run the same command with --resume
  to continue: the result is exactly that of an uninterrupted run.

exit status:
  0 done; 1 data, output directory or checkpoint problem; 2 bad flags;
  3 the loss diverged (not finite); 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM)
"""

EXIT_DIVERGED = 3


def _bool_flag(parser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None,
                        help=help + " (default: the technique's preset)")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Train one regularization technique of the Keras notebook in JAX and "
                    "report its curves and test accuracy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--technique", default="baseline", metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)} (default: baseline)")
    add_data_flags(p)
    p.add_argument("--output-dir", type=directory, metavar="DIR",
                   help="where history.json, curves.png, model.npz and checkpoints/ go "
                        "(default: runs/<technique>); must be empty or absent unless "
                        "--resume or --overwrite")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output directory from its newest "
                        "checkpoint; give the same flags as the run being resumed")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a non-empty output directory, deleting the "
                        "history.json, curves.png, model.npz and checkpoints/ there "
                        "(nothing else)")
    p.add_argument("--keep-checkpoints", type=int, default=2, metavar="N",
                   help="keep the newest N checkpoints plus the one with the lowest "
                        "val_loss (default 2)")
    p.add_argument("--quiet", action="store_true", help="print only the final result")
    add_config_flags(p)
    return p


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """A flag for every field of Config, in groups (None: the preset's value)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("mlp", "cnn"), help="mlp (Dense stack) or cnn "
                   "(Conv 3x3, MaxPool, Dense stack)")
    g.add_argument("--hidden", type=_hidden, metavar="N,N",
                   help="hidden Dense sizes (default: the preset's, 128,64; augmentation 128)")
    g.add_argument("--dropout", type=float, metavar="RATE",
                   help="dropout rate after each hidden layer, in [0, 1) (dropout preset: 0.25)")
    g.add_argument("--spatial-dropout", type=float, metavar="RATE",
                   help="CNN only: whole feature maps of the convolution dropped with this "
                        "rate (keras.layers.SpatialDropout2D; spatial_dropout preset: 0.2)")
    _bool_flag(g, "batchnorm", "BatchNormalization after each hidden layer "
               "(momentum 0.99, epsilon 1e-3)")

    g = p.add_argument_group("loss")
    g.add_argument("--l1", type=float, metavar="LAMBDA",
                   help="loss += LAMBDA * sum|w| over hidden kernels (l1 preset: 0.001)")
    g.add_argument("--l2", type=float, metavar="LAMBDA",
                   help="loss += LAMBDA * sum w^2 over hidden kernels (l2 preset: 0.001)")
    g.add_argument("--label-smoothing", type=float, metavar="S",
                   help="targets * (1 - S) + S / 10, in [0, 1] (label_smoothing preset: 0.1)")

    g = p.add_argument_group("weights (Keras optimizer semantics)")
    g.add_argument("--weight-decay", type=float, metavar="WD",
                   help="AdamW's decoupled decay: every weight w -= w * WD * LR before each "
                        "update (keras.optimizers.AdamW; weight_decay preset: 0.004)")
    g.add_argument("--ema", type=float, metavar="MOMENTUM",
                   help="keep a moving average of the weights (Keras' use_ema=True with "
                        "ema_momentum=MOMENTUM), which replaces them when training ends; "
                        "validation during training sees the raw weights, as in Keras "
                        "(weight_ema preset: 0.99; 0: off)")
    g.add_argument("--max-norm", type=float, metavar="C",
                   help="after each update, each hidden unit's incoming weights rescaled to "
                        "norm <= C (keras.constraints.MaxNorm(C, axis=0); max_norm preset: 3; "
                        "0: off)")

    g = p.add_argument_group("inputs")
    g.add_argument("--gaussian-noise", type=float, metavar="S",
                   help="N(0, S) noise added to every input pixel (in [0, 1]) in training, "
                        "a fresh draw every step (keras.layers.GaussianNoise; gaussian_noise "
                        "preset: 0.1)")
    g.add_argument("--mixup", type=float, metavar="ALPHA",
                   help="MixUp: each training image and its target blended with another's of "
                        "the batch, weights from Beta(ALPHA, ALPHA) (keras.layers.MixUp; "
                        "mixup preset: 0.2; 0: off)")
    g.add_argument("--cutmix", type=float, metavar="FACTOR",
                   help="CutMix: a random box of another training image of the batch pasted "
                        "into each, targets mixed by the box's area; FACTOR in (0, 1] bounds "
                        "the Beta parameter (keras.layers.CutMix; cutmix preset: 1; 0: off)")
    g.add_argument("--random-erasing", type=float, metavar="FACTOR",
                   help="RandomErasing: a random box of a training image replaced by N(0, 1) "
                        "noise, each image with probability ~ U(0, FACTOR) (so FACTOR / 2 on "
                        "average, as Keras computes it; keras.layers.RandomErasing; "
                        "random_erasing preset: 1; 0: off)")

    g = p.add_argument_group("augmentation (Keras ImageDataGenerator semantics, on device)")
    _bool_flag(g, "augment", "random affine transform of every training image, every step")
    g.add_argument("--rotation-range", type=float, metavar="DEG",
                   help=f"rotation drawn from [-DEG, DEG] (default {DEFAULTS.rotation_range})")
    g.add_argument("--shift-range", type=float, metavar="F",
                   help="shift drawn from [-F, F]: under 1 a fraction of the height and width, "
                        "1 or more pixels, as ImageDataGenerator reads it (default "
                        f"{DEFAULTS.shift_range})")
    g.add_argument("--shear-range", type=float, metavar="DEG",
                   help=f"shear drawn from [-DEG, DEG] degrees (default {DEFAULTS.shear_range})")
    g.add_argument("--zoom-range", type=float, metavar="Z",
                   help=f"zoom per axis drawn from [1-Z, 1+Z] (default {DEFAULTS.zoom_range})")

    g = p.add_argument_group("early stopping (on val_loss, Keras semantics)")
    _bool_flag(g, "early-stopping", "stop when val_loss has not improved for PATIENCE epochs")
    g.add_argument("--patience", type=int, metavar="N",
                   help=f"epochs without improvement before stopping (default {DEFAULTS.patience})")
    g.add_argument("--min-delta", type=float, metavar="D",
                   help="smallest decrease of val_loss that counts as an improvement (default 0)")
    _bool_flag(g, "restore-best-weights", "at the end, restore the weights of the epoch "
               "with the lowest val_loss")
    add_optimisation_flags(p)


def add_optimisation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (default 20; "
                   "early_stopping preset 50)")
    g.add_argument("--batch-size", type=int, metavar="N", help="default 64")
    g.add_argument("--learning-rate", type=float, metavar="LR",
                   help="Adam learning rate (default 0.001; b1 0.9, b2 0.999, epsilon 1e-7)")
    g.add_argument("--validation", choices=("split", "test"),
                   help="split: the last 20%% of the training rows (Keras validation_split=0.2); "
                        "test: train on all rows, validate on the test split")
    g.add_argument("--seed", type=int, metavar="N",
                   help="seeds initialisation, shuffling, dropout and augmentation (default 0)")
    g.add_argument("--devices", type=int, default=1, metavar="N",
                   help="split each batch between N devices (data parallelism; on a CPU, N "
                        "XLA devices share the cores). Pays only for large batches or the "
                        "CNN; default 1")


# Flags that only act through a switch: given without it, they would be silently ignored.
NEEDS = {"augment": ("rotation_range", "shift_range", "shear_range", "zoom_range"),
         "early_stopping": ("patience", "min_delta", "restore_best_weights")}


def config_from_args(args: argparse.Namespace) -> Config:
    """The config the flags ask for; raises ValueError naming a bad value, or a flag that
    would have no effect."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name, None) is not None}
    config = preset(args.technique, **overrides)
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    for switch, names in NEEDS.items():
        given = [name for name in names if name in overrides]
        if given and not getattr(config, switch):
            raise ValueError(f"{flag(given[0])} has no effect without {flag(switch)} "
                             f"(technique {args.technique!r} does not turn it on)")
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    if args.keep_checkpoints < 1:
        parser.error(f"--keep-checkpoints must be >= 1, got {args.keep_checkpoints}")
    if args.devices < 1 or config.batch_size % args.devices:
        parser.error(f"--devices must be >= 1 and divide --batch-size ({config.batch_size}), "
                     f"got {args.devices}")
    if args.devices > 1:  # on a CPU, XLA presents that many devices (before JAX starts)
        from regjax.train.devices import use_cpu_devices

        use_cpu_devices(args.devices)
    # Imported here so that --help and bad flags answer at once, without starting JAX.
    errors = user_errors()
    output_dir = args.output_dir or Path("runs") / args.technique
    lock = None
    try:
        from regjax.files import artifacts
        from regjax.train.fit import check_models_fit

        check_models_fit([config])  # before the disk check: name the flag that matters
        lock = artifacts.prepare_output_dir(
            output_dir, resume=args.resume, overwrite=args.overwrite,
            needed_bytes=artifacts.run_bytes(config, args.keep_checkpoints))
        return train(args, argv, config, output_dir)
    except errors as e:
        return fail(PROG, str(e))
    finally:
        if lock is not None:
            lock.release()


def train(args, argv: list[str], config: Config, output_dir: Path) -> int:
    import jax

    from regjax.files import artifacts
    from regjax.files.checkpoint import Checkpoints
    from regjax.reports import report
    from regjax.train import devices
    from regjax.train.fit import fit

    if args.devices > jax.device_count():
        return fail(PROG, f"--devices {args.devices}: only {jax.device_count()} device(s) here")
    dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    # Flushed line by line, so that `| tee`, a log file or a supervisor sees each epoch as it ends.
    log = (lambda _: None) if args.quiet else functools.partial(print, flush=True)
    train_split, val_split = data.model_data(config, dataset)
    regime = "".join([f", a random {config.train_size:,} of them" if config.train_size else "",
                      f", {config.label_noise:g} of their labels noisy" if config.label_noise
                      else ""])
    log(f"{args.technique} on {dataset.name} ({dataset.source}): {len(train_split):,} training "
        f"rows{regime}, {len(val_split):,} validation rows, device "
        f"{jax.devices()[0].device_kind}")
    about = {
        "technique": args.technique, "dataset": dataset.name, "data_source": dataset.source,
        "device": devices.device_name(), "platform": platform.platform(),
        "jax_version": jax.__version__,
    }

    def write_history(history: dict) -> None:
        artifacts.write_json(output_dir / artifacts.HISTORY, {**about, **history})

    checkpoints = Checkpoints(output_dir / artifacts.CHECKPOINTS, keep=args.keep_checkpoints)
    try:
        with StopOnSignal(PROG) as stop:
            history, model = fit(
                config, train_split, val_split, dataset.test, log=log, checkpoints=checkpoints,
                resume=args.resume, should_stop=stop, on_epoch=write_history,
                data_parallel=args.devices)
    except OSError as e:  # e.g. the disk filled up mid-run
        return fail(PROG, str(e))
    except jax.errors.JaxRuntimeError as e:
        if not devices.is_out_of_memory(e):
            raise
        raise devices.OutOfMemory("the device ran out of memory: lower --batch-size or "
                                  "--hidden") from None
    finally:
        checkpoints.close()
    write_history(history)
    if history["epochs_run"]:
        report.plot_run({**about, **history}, output_dir / artifacts.CURVES)

    done = history["epochs_run"]
    if history["status"] == "interrupted":
        print(stopped_message(PROG, output_dir / artifacts.CHECKPOINTS,
                              resume_command("scripts/train.py", argv)), file=sys.stderr)
        return 128 + stop.signum
    if history["status"] == "diverged":
        last = f"the checkpoint of epoch {done} in {output_dir / artifacts.CHECKPOINTS}" \
            if done else "none (no epoch finished)"
        fail(PROG, f"the loss became non-finite in epoch {history['diverged_epoch']}, so "
             f"training stopped; the last good checkpoint is {last}. Lower --learning-rate "
             "and start again with --overwrite")
        return EXIT_DIVERGED
    artifacts.save_model(output_dir / artifacts.MODEL, model)
    print(f"{args.technique}: test_accuracy {history['test_accuracy']:.4f} test_loss "
          f"{history['test_loss']:.4f} after {done} epochs "
          f"({history['train_steps_per_second']:,.0f} steps/s); wrote {output_dir}/"
          f"{artifacts.HISTORY}, {artifacts.CURVES} and {artifacts.MODEL}")
    return 0
