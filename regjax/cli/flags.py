"""The flags of the commands, generated where they can be: one per Config field from the
field's metadata (regjax.config), its help saying the default and the presets that set it;
the data flags; and the flags of an experiment (seeds, output directory, shares, processes),
read back into a Plan's settings. Nothing here starts JAX."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from regjax.config import CUSTOM, DEFAULTS, FIELDS, Config
from regjax.data import DATASETS
from regjax.presets import flag, preset, set_by


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def directory(text: str) -> Path:
    """A directory flag's value: an empty one is refused (it would mean the current
    directory, where --overwrite deletes files)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty name (use . for "
                                         "the current directory)")
    return Path(text)


def shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def field_help(name: str) -> str:
    """A field's help: what it does, its valid range, its default and the presets that set it."""
    meta = FIELDS[name].metadata
    valid = f", {meta['valid']}" if meta["valid"] is not None and meta["metavar"] else ""
    presets = "".join(f"; {t} preset {shown(v)}" for t, v in set_by(name).items())
    text = f"{meta['help']}{valid} (default {shown(getattr(DEFAULTS, name))}{presets})"
    return text.replace("%", "%%")


def config_flags(p: argparse.ArgumentParser, names=tuple(FIELDS)) -> None:
    """A flag for each of the Config fields `names`, in their --help groups (None when not
    given: the technique's preset decides)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        field = FIELDS[name]
        meta = field.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = p.add_argument_group(meta["group"])
        g = groups[meta["group"]]
        kind = hidden_sizes if meta["kind"] is tuple else meta["kind"]
        choices = meta["choices"] and tuple(c for c in meta["choices"] if c != CUSTOM)
        if kind is bool:
            g.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None,
                           help=field_help(name))
        else:
            g.add_argument(flag(name), type=kind, choices=choices,
                           metavar=meta["metavar"], help=field_help(name))


def given_config(args: argparse.Namespace) -> dict:
    """The Config fields whose flags were given."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if getattr(args, f.name, None) is not None}


def config_from_args(technique: str, given: dict) -> Config:
    """The preset with the given fields; raises ValueError naming a bad value, or a flag
    that would have no effect without its switch."""
    config = preset(technique, **given)
    for name in given:
        switch = FIELDS[name].metadata["needs"]
        if switch and not getattr(config, switch):
            raise ValueError(f"{flag(name)} has no effect without {flag(switch)} (technique "
                             f"{technique!r} does not turn it on)")
    return config


def data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion_mnist", metavar="NAME",
                   help=f"{' or '.join(DATASETS)} (default: fashion_mnist, installable "
                        "with `apt-get install dataset-fashion-mnist`; the notebook used mnist)")
    p.add_argument("--data-dir", type=directory, metavar="DIR",
                   help="directory with the four IDX files (train-images-idx3-ubyte[.gz], ...) "
                        "or a prepared TFDS data dir; default: search the TFDS data dir, "
                        "Debian's dataset package, then download")
    p.add_argument("--no-download", action="store_true",
                   help="never try to download the dataset")


def experiment_flags(p: argparse.ArgumentParser, default_output: str, seeds: int,
                     writes: tuple[str, ...], regime: bool = True) -> None:
    """The flags of compare.py, sweep.py and study.py besides what they train (`writes`: the
    files its report writes; `regime`: the data regime's flags, one value each; a study
    gives lists of its own)."""
    data_flags(p)
    if regime:
        config_flags(p, ("train_size", "label_noise"))
    p.add_argument("--seeds", type=int, default=seeds, metavar="N",
                   help=f"seeds per setting, 0..N-1 (default {seeds})")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="override every preset's epochs (e.g. 2 for a quick look)")
    p.add_argument("--output-dir", type=directory, default=Path(default_output), metavar="DIR",
                   help=f"where {', '.join(writes)} go (default "
                        f"{default_output}); must be empty or absent unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier report in --output-dir (deletes only its files)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was stopped (Ctrl-C, SIGTERM, a crash) from its "
                        "checkpoints in --output-dir; give the same flags")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    g = p.add_argument_group("several machines or processes (see docs/cluster.md)")
    g.add_argument("--shard", metavar="I/N",
                   help="train only share I of N of the models (0 <= I < N; models I, I+N, "
                        "I+2N, ...) and write their results.json, for running a command on "
                        "several machines; then --merge the shares' directories")
    g.add_argument("--merge", nargs="+", type=directory, metavar="DIR",
                   help="write the report from the results.json of every share of one "
                        "command (trains nothing; the other flags come from the shares)")
    g.add_argument("--distributed", action="store_true",
                   help="one process of a run over several processes or hosts, joined by "
                        "jax.distributed (SLURM, Open MPI and Kubernetes are detected; else "
                        "give --coordinator, --num-processes, --process-id): each trains its "
                        "share, process 0 writes the report")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (implies --distributed; process 0 listens there)")
    g.add_argument("--num-processes", type=int, metavar="N", help="processes in all")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    g.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the other processes (default 120)")
