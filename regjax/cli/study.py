"""`scripts/study.py`: techniques x a grid of knob values x data regimes x seeds as one plan
(one compiled program per structure and number of rows); report the map of where each
regularizer helps, its learning curves and generalization gap."""

from __future__ import annotations

from regjax.cli import experiment
from regjax.cli.flags import experiment_flags
from regjax.experiment.study import FAMILIES, grid_knobs, study_plan
from regjax.files.outdir import CURVES, MAP, REPORT, RESPONSE, RESULTS
from regjax.presets import TECHNIQUES

SCRIPT = "scripts/study.py"

EPILOG = f"""\
grid knobs (--grid; each point is combined with each technique where it makes sense, and the
combinations left out are listed in the report):
  {", ".join(grid_knobs())}

The plain network (baseline) is trained in every regime: each cell of the map is a setting's
difference from it, with Welch's 95% interval, marked where it survives Holm's correction.

examples:
  python scripts/study.py --techniques mlp --train-size 500,2000,8000,0 \\
      --label-noise 0,0.2,0.4 --seeds 5 --output-dir runs/study
  python scripts/study.py --techniques dropout,l2 --grid dropout=0,0.25,0.5 l2=0,1e-4 \\
      --train-size 2000 --seeds 3 --epochs 5"""


def parser():
    p = experiment.report_parser(
        "study.py", "Train techniques x knob grids x data regimes x seeds as one plan and "
        "report where each regularizer helps: report.md, map.png, curves.png, response.png "
        "and results.json.", EPILOG)
    p.add_argument("--techniques", default="all", metavar="LIST",
                   help=f"comma-separated, or {', '.join(FAMILIES)} (the MLP or the CNN "
                        f"techniques): {', '.join(TECHNIQUES)} (default all)")
    p.add_argument("--grid", nargs="+", default=[], metavar="KNOB=V1,V2",
                   help="knob values to combine (a full product), e.g. dropout=0,0.25,0.5 "
                        "l2=0,1e-4")
    p.add_argument("--train-size", dest="train_sizes", default="0", metavar="LIST",
                   help="comma-separated training rows per regime (0: all), e.g. "
                        "500,2000,8000,0 (default 0)")
    p.add_argument("--label-noise", dest="label_noises", default="0", metavar="LIST",
                   help="comma-separated fractions of training labels replaced by a random "
                        "other class, e.g. 0,0.2,0.4 (default 0)")
    experiment_flags(p, "runs/study", seeds=5, regime=False,
                     writes=(RESULTS, REPORT, MAP, CURVES, RESPONSE))
    return p


def numbers(flag: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def grid_of(items: list[str]) -> dict[str, list[float]]:
    grid = {}
    for item in items:
        knob, sep, values = item.partition("=")
        if not sep or not knob or not values:
            raise ValueError(f"--grid: expected KNOB=V1,V2,..., got {item!r}")
        if knob in grid:
            raise ValueError(f"--grid: {knob} given twice; list all its values once")
        grid[knob] = numbers(f"--grid {knob}", values)
    return grid


FLAGS = {"train_sizes": "--train-size", "label_noises": "--label-noise", "grid": "--grid",
         "techniques": "--techniques"}  # keyword -> flag


def plan_of(args, **settings):
    names = args.techniques if args.techniques in FAMILIES else args.techniques.split(",")
    try:
        return study_plan(names, grid_of(args.grid), numbers("--train-size", args.train_sizes),
                          numbers("--label-noise", args.label_noises), args.seeds, **settings)
    except ValueError as e:  # name the flag, not the Python keyword, on the command line
        keyword, sep, rest = str(e).partition(":")
        raise ValueError(f"{FLAGS[keyword]}:{rest}" if sep and keyword in FLAGS else str(e)) \
            from None


def study_main(argv: list[str] | None = None) -> int:
    return experiment.main(parser(), argv, SCRIPT, plan_of)
