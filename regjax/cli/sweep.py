"""`scripts/sweep.py`: one technique over a range of one knob's values and several seeds,
all trained at once in one program; report test accuracy and generalization gap against the
value."""

from __future__ import annotations

from regjax.cli import experiment
from regjax.cli.flags import experiment_flags
from regjax.config import FIELDS
from regjax.experiment.plan import sweep_plan
from regjax.files.outdir import REPORT, RESULTS, SWEEP_PLOT
from regjax.presets import AUGMENT_STRENGTH, SWEEP_KNOBS, TECHNIQUES

SCRIPT = "scripts/sweep.py"


def knobs_help() -> str:
    """The knobs sweep.py can vary, each with what it does (from the Config fields)."""
    lines = [f"  {name:<16} {FIELDS[name].metadata['help']}" for name in SWEEP_KNOBS
             if name in FIELDS]
    lines.append(f"  {AUGMENT_STRENGTH:<16} scales the augmentation preset's rotation, shift, "
                 "shear and zoom ranges (1 = the notebook's)")
    return "\n".join(lines)


EPILOG = f"""\
knobs (--knob; a technique's own knob is the default, e.g. l2 for l2):
{knobs_help()}
  train_size trains one program per value: models trained together share their number of rows.

examples:
  python scripts/sweep.py --technique l2 --values 0,1e-5,1e-4,1e-3,1e-2 --seeds 3
  python scripts/sweep.py --technique dropout --knob label_noise --values 0,0.2,0.4 \\
      --train-size 2000"""


def parser():
    p = experiment.report_parser(
        "sweep.py", "Train one technique over a range of one knob's values and several "
        "seeds, all at once in one program; report test accuracy and generalization gap "
        "against the value.", EPILOG)
    p.add_argument("--technique", metavar="NAME",
                   help=f"preset to start from: {', '.join(TECHNIQUES)}")
    p.add_argument("--knob", choices=SWEEP_KNOBS, metavar="KNOB",
                   help="what to vary (default: the technique's own knob; see below)")
    p.add_argument("--values", metavar="LIST",
                   help="comma-separated values of the knob, e.g. 0,1e-4,1e-3")
    experiment_flags(p, "runs/sweep", seeds=3, writes=(RESULTS, REPORT, SWEEP_PLOT))
    return p


def plan_of(args, **settings):
    if args.technique is None or args.values is None:
        raise ValueError("--technique and --values are required (unless --merge)")
    try:
        values = [float(v) for v in args.values.split(",")]
    except ValueError:
        raise ValueError(f"--values: expected comma-separated numbers, got {args.values!r}")
    return sweep_plan(args.technique, values, args.knob, args.seeds, **settings)


def sweep_main(argv: list[str] | None = None) -> int:
    return experiment.main(parser(), argv, SCRIPT, plan_of)
