"""`python -m regjax train|compare|sweep|study [flags]`: the four commands (also installed as
regjax-train, regjax-compare, regjax-sweep and regjax-study)."""

from __future__ import annotations

import sys

COMMANDS = ("train", "compare", "sweep", "study")
USAGE = ("usage: python -m regjax {train,compare,sweep,study} [flags]   "
         "(python -m regjax COMMAND --help explains each)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"regjax: error: unknown command {command!r}; {USAGE}", file=sys.stderr)
        return 2
    return {"train": train, "compare": compare, "sweep": sweep, "study": study}[command](rest)


def train(argv: list[str] | None = None) -> int:
    from regjax.cli.train import main as train_main

    return train_main(argv)


def compare(argv: list[str] | None = None) -> int:
    from regjax.cli.compare import compare_main

    return compare_main(argv)


def sweep(argv: list[str] | None = None) -> int:
    from regjax.cli.sweep import sweep_main

    return sweep_main(argv)


def study(argv: list[str] | None = None) -> int:
    from regjax.cli.study import study_main

    return study_main(argv)


if __name__ == "__main__":
    sys.exit(main())
