"""What compare.py and sweep.py share: their flags read back into a plan's settings, and
parse -> plan -> run -> report, with a bad flag answered in one line, a problem the user can
fix in one line with exit status 1, and a stop (Ctrl-C, SIGTERM) with the command that
resumes it."""

from __future__ import annotations

import argparse
import sys

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
from regjax.cli.flags import given_config
from regjax.experiment.plan import Cluster, Plan
from regjax.experiment.shards import parse_shard, share_command
from regjax.files.outdir import CHECKPOINTS


def report_parser(prog: str, description: str, epilog: str) -> Parser:
    """A parser for a command that writes a report (its epilogue keeps its line breaks)."""
    return Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


def settings(args: argparse.Namespace, parser: Parser) -> dict:
    """The Plan fields and the shared Config fields the experiment flags ask for; exits on
    flags that contradict each other."""
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    distributed = args.distributed or args.coordinator is not None
    if sum(map(bool, (args.shard is not None, args.merge, distributed))) > 1:
        parser.error("--shard, --merge and --distributed exclude each other: give one")
    if args.resume and args.merge:
        parser.error("--resume continues a run that trains; --merge trains nothing")
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in explicit) and None in explicit:
        parser.error("--coordinator, --num-processes and --process-id go together")
    if args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in 0..{args.num_processes - 1}, got "
                     f"{args.process_id}")
    try:
        shard = None if args.shard is None else parse_shard(args.shard)
    except ValueError as e:
        parser.error(str(e))
    cluster = Cluster(args.coordinator, args.num_processes, args.process_id,
                      args.timeout) if distributed else None
    return dict(given_config(args), dataset=args.dataset, data_dir=args.data_dir,
                download=not args.no_download, output_dir=args.output_dir,
                resume=args.resume, overwrite=args.overwrite, shard=shard, cluster=cluster,
                progress=False if args.quiet else None)


def main(parser: Parser, argv: list[str] | None, script: str, plan_of) -> int:
    """Runs the command: plan_of(args, command=..., **settings) builds its plan (a ValueError
    is a bad flag), or --merge reports from the shares."""
    argv = sys.argv[1:] if argv is None else argv
    readable_output()
    args = parser.parse_args(argv)
    chosen = settings(args, parser)
    plan = None
    if not args.merge:
        try:
            plan = plan_of(args, command=share_command(script, argv), **chosen)
        except ValueError as e:
            parser.error(str(e))
    from regjax.train.devices import use_cpu_devices

    use_cpu_devices()  # before JAX starts: the models are split between the cores
    errors = user_errors()
    from regjax.experiment import runner

    try:
        if plan is None:
            return announce(runner.merge(args.merge, args.output_dir, script, args.overwrite),
                            args.output_dir, None, script)
        if plan.resume:
            resume_notice(parser.prog, plan.output_dir / CHECKPOINTS)
        with StopOnSignal(parser.prog) as stop:
            results = runner.run(plan, should_stop=stop)
    except runner.Stopped as e:
        print(stopped_message(parser.prog, e.checkpoints, resume_command(script, argv)),
              file=sys.stderr)
        return 128 + stop.signum
    except errors as e:
        return fail(parser.prog, str(e))
    return announce(results, plan.output_dir, plan, script)


def announce(results, out, plan: Plan | None, script: str) -> int:
    """What the command prints when it is done."""
    from regjax.files.outdir import RESULTS

    if results.finished_before:
        print(f"share {results.shard[0]}/{results.shard[1]} is already finished: "
              f"{out / RESULTS}; nothing to resume")
    elif results.shard is not None and plan.cluster is not None:
        print(f"process {results.shard[0]}/{results.shard[1]}: trained {results.models()} "
              "models; process 0 writes the report")
    elif results.shard is not None:
        print(f"wrote share {results.shard[0]}/{results.shard[1]} ({results.models()} models) "
              f"to {out / RESULTS}; when every share is done: python {script} --merge DIR1 "
              "DIR2 ... --output-dir DIR")
    else:
        print(results.markdown())
        print(f"wrote {out}/{', '.join(results.saved)}")
    return 0
