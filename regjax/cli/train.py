"""`python scripts/train.py`: train one technique (or any combination of knobs), print one
line per epoch, write history.json, curves.png, checkpoints and the trained model; resume a
run that was interrupted."""

from __future__ import annotations

import argparse
import functools
import platform
import sys
from pathlib import Path

from regjax import data
from regjax.cli.common import (
    Parser,
    StopOnSignal,
    fail,
    readable_output,
    resume_command,
    resume_notice,
    stopped_message,
    user_errors,
)
from regjax.cli.flags import config_flags, config_from_args, data_flags, directory, given_config
from regjax.presets import PRESETS, TECHNIQUES

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


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Train one regularization technique of the Keras notebook in JAX and "
                    "report its curves and test accuracy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--technique", default="baseline", metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)} (default: baseline)")
    data_flags(p)
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
    config_flags(p)
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="split each batch between N devices (data parallelism; on a CPU, N "
                        "XLA devices share the cores). Pays only for large batches or the "
                        "CNN; default 1")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    readable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args.technique, given_config(args))
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
        from regjax.files import outdir
        from regjax.train import budget

        # The data first: its shape sizes the model, its memory and its checkpoints.
        dataset = data.load_dataset(args.dataset, args.data_dir, download=not args.no_download)
        budget.check_models_fit([config], dataset.spec)  # before the disk: name the flag
        lock = outdir.prepare_output_dir(
            output_dir, resume=args.resume, overwrite=args.overwrite,
            needed_bytes=budget.checkpoint_bytes(config, dataset.spec, args.keep_checkpoints))
        return train(args, argv, config, dataset, output_dir)
    except errors as e:
        return fail(PROG, str(e))
    finally:
        if lock is not None:
            lock.release()


def train(args, argv: list[str], config, dataset, output_dir: Path) -> int:
    import jax

    from regjax.files import outdir
    from regjax.reports import plots
    from regjax.train import devices

    if args.devices > jax.device_count():
        return fail(PROG, f"--devices {args.devices}: only {jax.device_count()} device(s) here")
    resume = args.resume and resume_notice(PROG, output_dir / outdir.CHECKPOINTS)
    try:
        # From the first line on: a stop before the first epoch ends is a stop too.
        with StopOnSignal(PROG) as stop:
            history, model, write_history = fit_run(args, config, dataset, output_dir, resume,
                                                    stop)
    except OSError as e:  # e.g. the disk filled up mid-run
        return fail(PROG, str(e))
    except jax.errors.JaxRuntimeError as e:
        if not devices.is_out_of_memory(e):
            raise
        raise devices.OutOfMemory("the device ran out of memory: lower --batch-size or "
                                  "--hidden") from None
    history = write_history(history)
    if history["epochs_run"]:
        plots.save_figure(plots.run_figure(history), output_dir / outdir.CURVES)
    return outcome(args, argv, history, model, output_dir, stop.signum)


def fit_run(args, config, dataset, output_dir: Path, resume: bool, should_stop):
    """Says what trains on what, and fits with a checkpoint after every epoch and
    history.json rewritten after every epoch; returns the history, the model and the
    function that writes history.json (it returns what it wrote)."""
    import jax

    from regjax.files import atomic, outdir
    from regjax.files.checkpoint import Checkpoints
    from regjax.train import devices
    from regjax.train.fit import fit

    # Flushed line by line, so that `| tee`, a log file or a supervisor sees each epoch as it ends.
    log = (lambda _: None) if args.quiet else functools.partial(print, flush=True)
    train_split, val_split = data.model_data(config, dataset)
    regime = "".join([f", a random {config.train_size:,} of them" if config.train_size else "",
                      f", {config.label_noise:g} of their labels noisy" if config.label_noise
                      else ""])
    log(f"{args.technique} on {dataset.name} ({dataset.source}; {dataset.spec}): "
        f"{len(train_split):,} training rows{regime}, {len(val_split):,} validation rows, "
        f"device {jax.devices()[0].device_kind}")
    about = {
        "technique": args.technique, "dataset": dataset.name, "data_source": dataset.source,
        "device": devices.device_name(), "platform": platform.platform(),
        "jax_version": jax.__version__,
    }

    def write_history(history: dict) -> dict:
        atomic.write_json(output_dir / outdir.HISTORY, {**about, **history})
        return {**about, **history}

    checkpoints = Checkpoints(output_dir / outdir.CHECKPOINTS, keep=args.keep_checkpoints)
    try:
        history, model = fit(
            config, train_split, val_split, dataset.test, log=log, checkpoints=checkpoints,
            resume=resume, should_stop=should_stop, on_epoch=write_history,
            data_parallel=args.devices)
    finally:
        checkpoints.close()
    return history, model, write_history


def outcome(args, argv: list[str], history: dict, model, output_dir: Path, signum) -> int:
    """What the run ended in, said on the terminal; the model saved if it completed."""
    from regjax.files import modelfile, outdir

    done = history["epochs_run"]
    if history["status"] == "interrupted":
        print(stopped_message(PROG, output_dir / outdir.CHECKPOINTS,
                              resume_command("scripts/train.py", argv)), file=sys.stderr)
        return 128 + signum
    if history["status"] == "diverged":
        last = f"the checkpoint of epoch {done} in {output_dir / outdir.CHECKPOINTS}" \
            if done else "none (no epoch finished)"
        fail(PROG, f"the loss became non-finite in epoch {history['diverged_epoch']}, so "
             f"training stopped; the last good checkpoint is {last}. Lower --learning-rate "
             "and start again with --overwrite")
        return EXIT_DIVERGED
    modelfile.save_model(output_dir / outdir.MODEL, model)
    print(f"{args.technique}: test_accuracy {history['test_accuracy']:.4f} test_loss "
          f"{history['test_loss']:.4f} after {done} epochs "
          f"({history['train_steps_per_second']:,.0f} steps/s); wrote {output_dir}/"
          f"{outdir.HISTORY}, {outdir.CURVES} and {outdir.MODEL}")
    return 0
