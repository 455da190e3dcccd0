"""`python scripts/train.py`: train one technique (or any combination of knobs), print one
line per epoch, write history.json and the trained model."""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

from regjax import data
from regjax.config import TECHNIQUES, Config, preset

DEFAULTS = Config()

EPILOG = """\
techniques (the notebook's set-ups; every flag below overrides its preset):
  baseline         Dense 128-64-10, Adam, batch 64, 20 epochs, last 20%% of train validates
  l1               baseline + l1(0.001) on the hidden kernels         (--l1)
  l2               baseline + l2(0.001) on the hidden kernels         (--l2)
  dropout          baseline + Dropout(0.25) after each hidden layer   (--dropout)
  batchnorm        baseline + BatchNormalization after each hidden layer (--batchnorm)
  early_stopping   baseline, up to 50 epochs, stop when val_loss stalls 3 epochs (--patience)
  augmentation     CNN with random rotation/shift/shear/zoom, validated on test (--augment)
  label_smoothing  baseline with targets smoothed by 0.1, validated on test (--label-smoothing)

examples:
  python scripts/train.py --technique dropout --dataset fashion_mnist
  python scripts/train.py --technique dropout --l2 1e-4 --augment --epochs 5
  python scripts/train.py --technique baseline --data-dir ~/mnist-idx --dataset mnist
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _bool_flag(parser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None,
                        help=help + " (default: the technique's preset)")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train.py",
        description="Train one regularization technique of the Keras notebook in JAX and "
                    "report its curves and test accuracy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--technique", default="baseline", metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)} (default: baseline)")
    p.add_argument("--dataset", default="fashion_mnist", metavar="NAME",
                   help=f"{' or '.join(data.DATASETS)} (default: fashion_mnist, installable "
                        "with `apt-get install dataset-fashion-mnist`; the notebook used mnist)")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="directory with the four IDX files (train-images-idx3-ubyte[.gz], ...) "
                        "or a prepared TFDS data dir; default: search the TFDS data dir, "
                        "Debian's dataset package, then download")
    p.add_argument("--no-download", action="store_true",
                   help="never try to download the dataset")
    p.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="where history.json and model.npz go (default: runs/<technique>)")
    p.add_argument("--quiet", action="store_true", help="print only the final result")

    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("mlp", "cnn"), help="mlp (Dense stack) or cnn "
                   "(Conv 3x3, MaxPool, Dense stack)")
    g.add_argument("--hidden", type=_hidden, metavar="N,N",
                   help="hidden Dense sizes (default: the preset's, 128,64; augmentation 128)")
    g.add_argument("--dropout", type=float, metavar="RATE",
                   help="dropout rate after each hidden layer, in [0, 1) (dropout preset: 0.25)")
    _bool_flag(g, "batchnorm", "BatchNormalization after each hidden layer "
               "(momentum 0.99, epsilon 1e-3)")

    g = p.add_argument_group("loss")
    g.add_argument("--l1", type=float, metavar="LAMBDA",
                   help="loss += LAMBDA * sum|w| over hidden kernels (l1 preset: 0.001)")
    g.add_argument("--l2", type=float, metavar="LAMBDA",
                   help="loss += LAMBDA * sum w^2 over hidden kernels (l2 preset: 0.001)")
    g.add_argument("--label-smoothing", type=float, metavar="S",
                   help="targets * (1 - S) + S / 10, in [0, 1] (label_smoothing preset: 0.1)")

    g = p.add_argument_group("augmentation (Keras ImageDataGenerator semantics, on device)")
    _bool_flag(g, "augment", "random affine transform of every training image, every step")
    g.add_argument("--rotation-range", type=float, metavar="DEG",
                   help=f"rotation drawn from [-DEG, DEG] (default {DEFAULTS.rotation_range})")
    g.add_argument("--shift-range", type=float, metavar="F",
                   help=f"shift drawn from [-F, F] of height and width (default {DEFAULTS.shift_range})")
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
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name, None) is not None}
    return preset(args.technique, **overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    output_dir = args.output_dir or Path("runs") / args.technique
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"cannot create output directory {output_dir}: {e.strerror}")
    try:
        dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    except data.DataError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1

    # Imported here so that --help and bad flags answer at once, without starting JAX.
    import jax

    from regjax import artifacts
    from regjax.train import fit

    log = (lambda _: None) if args.quiet else print
    train_split, val_split = data.train_and_validation(dataset, config.validation)
    log(f"{args.technique} on {dataset.name} ({dataset.source}): {len(train_split):,} training "
        f"rows, {len(val_split):,} validation rows, device {jax.devices()[0].device_kind}")
    history, trainer, state = fit(config, train_split, val_split, dataset.test, log=log)
    history = {
        "technique": args.technique, "config": config.to_dict(), "dataset": dataset.name,
        "data_source": dataset.source, "device": jax.devices()[0].device_kind,
        "platform": platform.platform(), "jax_version": jax.__version__, **history,
    }
    artifacts.write_json(output_dir / "history.json", history)
    artifacts.save_model(output_dir / "model.npz", config, state.params, state.batch_stats)
    print(f"{args.technique}: test_accuracy {history['test_accuracy']:.4f} test_loss "
          f"{history['test_loss']:.4f} after {history['epochs_run']} epochs "
          f"({history['train_steps_per_second']:,.0f} steps/s); wrote {output_dir}/history.json "
          f"and model.npz")
    return 0
