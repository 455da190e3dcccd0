"""A comparison or sweep split into shares that run apart (job arrays, machines that cannot
reach each other), and the shares' results merged into one report.

The models of a command are numbered in the order it lists them (setting by setting, seeds
in order). Share I of N (`--shard I/N`) trains models I, I + N, I + 2N, ... (round robin, so
every share gets part of every setting, the slow ones included) and writes results.json with
the share, the models' numbers, the command without --shard and --output-dir, and the code's
versions. `--merge DIR...` checks that the shares come from one command and one code and
hold every model once, then reports as the one-process run of the command does: each model
trains with its own seed's key tree whatever else shares its program, so its history is the
same (bitwise on a CPU, where a device's models run one at a time).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

# Flags that differ between the shares of one command (each takes a value), and how a share
# was run (a share resumed after a stop is still a share of the same command).
PER_SHARE = ("--shard", "--output-dir", "--process-id")
HOW_RUN = ("--resume", "--quiet", "--overwrite")  # how a run goes, not what it gives


class MergeError(ValueError):
    """Shares that cannot be merged: unreadable, not shares, or not of one command."""


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N) with 0 <= I < N; raises ValueError naming the problem."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N (shares are numbered from 0)")
    return index, count


def common_command(argv: list[str]) -> list[str]:
    """The command line without the flags that differ between shares or runs of a share."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in PER_SHARE:
            skip = True
        elif arg not in HOW_RUN and not arg.startswith(tuple(f"{f}=" for f in PER_SHARE)):
            kept.append(arg)
    return kept


def share_command(script: str, argv: list[str]) -> str:
    """The command every share of one run records (common_command, as a shell line)."""
    return shlex.join(["python", script, *common_command(argv)])


def finished_share(path: Path, command: str, shard: tuple[int, int]) -> bool:
    """Whether `path` holds the finished results of share `shard` of `command`
    (share_command's) run by this code."""
    try:
        share = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (share.get("shard") == list(shard) and share.get("command") == command
            and share.get("code") == code_versions())


def code_versions() -> dict[str, str]:
    """regjax's and jax's versions and a digest of regjax's source files: shares of one
    command must run the same code to be merged."""
    import hashlib

    import jax

    from regjax import __version__

    digest = hashlib.sha256()
    package = Path(__file__).parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return {"regjax": __version__, "source": digest.hexdigest()[:16], "jax": jax.__version__}


def describe(code: dict[str, str], shares: int) -> str:
    return (f"regjax {code['regjax']} (source {code['source']}), jax {code['jax']}, merged "
            f"from {shares} shares")


def take(batches: list[tuple[str, list]], shard: tuple[int, int] | None):
    """The share's part of `batches` ([(label, [member, ...])], members numbered in order):
    (the batches with only its members, empty ones left out; the members' numbers)."""
    if shard is None:
        total = sum(len(members) for _, members in batches)
        return batches, list(range(total))
    index, count = shard
    taken, numbers, n = [], [], 0
    for label, members in batches:
        mine = []
        for member in members:
            if n % count == index:
                mine.append(member)
                numbers.append(n)
            n += 1
        if mine:
            taken.append((label, mine))
    return taken, numbers


def merge(directories: list[Path], script: str) -> dict:
    """The shares' results.json in `directories` merged (see merge_results)."""
    shares = []
    for directory in directories:
        path = Path(directory) / "results.json"
        try:
            shares.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as e:
            raise MergeError(f"{path}: cannot read a share's results ({e})") from None
    return merge_results(shares, script)


def merge_results(shares: list[tuple[object, dict]], script: str | None = None) -> dict:
    """[(where it came from, a share's results)] merged into the results a one-process run
    writes ("command" the shares' common command, every group's runs in model order, a
    group's wall time the longest of its shares'); raises MergeError naming what does not
    fit together (`script`: the one that must have written them)."""
    for path, results in shares:
        if "shard" not in results:
            raise MergeError(f"{path}: not a share (it was written without --shard)")
    first_path, first = shares[0]
    if script is not None and not first["command"].startswith(f"python {script}"):
        raise MergeError(f"{first_path}: written by {first['command'].split()[1]}, not "
                         f"{script}; merge with that script")
    for path, results in shares[1:]:
        for key, what in (("command", "command"), ("code", "code versions")):
            if results[key] != first[key]:
                raise MergeError(f"{path} and {first_path} come from different {what}: "
                                 f"{results[key]!r} vs {first[key]!r}")
    count = first["shard"][1]
    indices = sorted(results["shard"][0] for _, results in shares)
    if [results["shard"][1] for _, results in shares] != [count] * len(shares) or \
            indices != list(range(count)):
        raise MergeError(f"shares must be 0/{count} to {count - 1}/{count}, each once; got "
                         + ", ".join(f"{r['shard'][0]}/{r['shard'][1]}" for _, r in shares))
    runs: dict[str, list[tuple[int, dict]]] = {}
    wall: dict[str, float] = {}
    for _, results in shares:
        for name, group in results["groups"].items():
            runs.setdefault(name, []).extend(zip(results["models"][name], group["runs"]))
            wall[name] = max(wall.get(name, 0.0), group["wall_seconds"])
    merged = {k: v for k, v in first.items() if k not in ("shard", "models", "groups")}
    # Groups in the order of their first model, as the command lists them.
    order = sorted(runs, key=lambda name: min(number for number, _ in runs[name]))
    merged["groups"] = {name: {"wall_seconds": wall[name],
                               "runs": [run for _, run in sorted(runs[name],
                                                                 key=lambda x: x[0])]}
                        for name in order}
    return merged
