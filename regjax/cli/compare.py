"""`scripts/compare.py`: techniques over several seeds, each technique's seeds trained at
once as one compiled program; then report.md, curves.png, summary.png and results.json."""

from __future__ import annotations

from regjax.cli import experiment
from regjax.cli.flags import experiment_flags
from regjax.experiment.plan import compare_plan
from regjax.files.outdir import CURVES, REPORT, RESULTS, SUMMARY
from regjax.presets import TECHNIQUES

SCRIPT = "scripts/compare.py"


def parser():
    p = experiment.report_parser(
        "compare.py", "Train techniques over several seeds (each technique's seeds in one "
        "compiled program) and write report.md, curves.png, summary.png and results.json.",
        "example:\n  python scripts/compare.py --techniques all --seeds 5 --dataset "
        "fashion_mnist --output-dir runs/compare")
    p.add_argument("--techniques", default="all", metavar="LIST",
                   help=f"comma-separated, or all: {', '.join(TECHNIQUES)} (default all)")
    p.add_argument("--ensemble", action="store_true",
                   help="also report each technique's seeds as one ensemble: their class "
                        "probabilities on the test split averaged (free: the seeds are "
                        "trained together)")
    experiment_flags(p, "runs/compare", seeds=5,
                     writes=(RESULTS, REPORT, CURVES, SUMMARY))
    return p


def plan_of(args, **settings):
    names = "all" if args.techniques == "all" else args.techniques.split(",")
    return compare_plan(names, args.seeds, ensemble=args.ensemble, **settings)


def compare_main(argv: list[str] | None = None) -> int:
    return experiment.main(parser(), argv, SCRIPT, plan_of)
