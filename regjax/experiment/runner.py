"""Carrying out a plan: `run(plan) -> Results` trains the plan's programs one after another
(each a vmapped batch of models, regjax.train.batched), checkpointing every batch after every
epoch and resuming from those checkpoints; in one process, as one share of several, or as one
process of a jax.distributed run; then writes results.json and the report, and only then
deletes the checkpoints (a crash in between loses nothing). `merge` reports from the shares'
results.json files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from regjax import data
from regjax.experiment import distributed, shards
from regjax.experiment.identity import difference, identity
from regjax.experiment.plan import Batch, Plan
from regjax.experiment.results import Results
from regjax.files import atomic, outdir
from regjax.files.checkpoint import CheckpointError, Checkpoints
from regjax.files.outdir import CHECKPOINTS, EXPERIMENT_FILES, PLAN, RESULTS
from regjax.models import model_name
from regjax.train import budget, devices
from regjax.train.batched import fit_batched
from regjax.train.engine import checked_program

KEEP = 1  # checkpoints kept per batch (plus the best): a batch resumes from its newest


class Stopped(Exception):
    """A stop was asked (should_stop) before every batch finished; the finished epochs are
    checkpointed in `checkpoints` (resume with the same plan and resume=True)."""

    def __init__(self, checkpoints: Path | None):
        super().__init__(f"stopped; finished epochs are checkpointed in {checkpoints}")
        self.checkpoints = checkpoints


def run(plan: Plan, should_stop=lambda: False) -> Results:
    """Trains the plan (its share of it, under --shard or jax.distributed) and returns its
    results; with an output directory, written there with the report. Raises Stopped when
    should_stop() turned true first."""
    out = plan.output_dir
    if plan.resume and plan.shard is not None and shards.finished_share(
            out / RESULTS, plan.command, plan.shard):
        return Results.load(out, finished_before=True)
    if plan.cluster is not None:  # this process trains its share; process 0 reports
        c = plan.cluster
        plan = dataclasses.replace(plan, shard=distributed.initialize(
            c.coordinator, c.num_processes, c.process_id, c.timeout))
    # The data first: its shape sizes the checkpoints the output directory must hold.
    dataset = plan.data if plan.data is not None else data.load_dataset(
        plan.dataset, plan.data_dir, download=plan.download)
    lock = None
    try:
        if out is not None and (plan.cluster is None or plan.shard[0] == 0):
            # Every batch's checkpoints stay until the report is written.
            needed = 10_000_000 + sum(budget.checkpoint_bytes(c, dataset.spec, KEEP, plan.maker)
                                      for c in plan.configs())
            lock = outdir.prepare_output_dir(out, resume=plan.resume,
                                             overwrite=plan.overwrite, needed_bytes=needed,
                                             owned=EXPERIMENT_FILES,
                                             models=len(plan.configs()))
        if plan.cluster is not None:  # no process writes its checkpoints before the
            distributed.barrier("output directory prepared")  # directory is checked
        return train_and_gather(plan, dataset, should_stop)
    finally:
        if lock is not None:
            lock.release()


def train_and_gather(plan: Plan, dataset: data.Dataset, should_stop) -> Results:
    data.check_regime(plan.configs(), dataset)
    mine, numbers = shards.take(list(plan.batches), plan.shard)
    for label, members in mine:  # before anything trains or is written: each program
        configs = [c for _, c in members]  # can be built (a user's model checked) and fits
        checked_program(configs, dataset.spec, plan.maker)
        budget.check_program_fits(label, configs, dataset.spec, len(dataset.train),
                                  plan.maker)
    checkpoints = None if plan.output_dir is None else plan.output_dir / CHECKPOINTS
    if plan.cluster is not None:  # each process keeps its own (perhaps on its own disk)
        checkpoints = checkpoints / f"process-{plan.shard[0]}"
    if checkpoints is not None:
        claim_checkpoints(checkpoints, plan)
    groups, wall, interrupted = train_groups(mine, dataset, plan.progress, checkpoints,
                                             plan.resume, should_stop, plan.ensemble,
                                             plan.maker)
    if interrupted:
        raise Stopped(checkpoints)
    record = {"command": plan.command, "dataset": dataset.name,
              **({"model": model_name(plan.maker)} if plan.maker is not None else {}),
              "data_source": dataset.source, "train_rows": len(dataset.train),
              "code": shards.code_versions(), **plan.about,
              "groups": {name: {"wall_seconds": wall[name], "runs": runs}
                         for name, runs in groups.items()}}
    if plan.shard is None:
        return finish(Results(record), plan.output_dir, devices.this_machine(), checkpoints)
    models: dict[str, list[int]] = {}
    for name, number in zip([name for _, members in mine for name, _ in members], numbers):
        models.setdefault(name, []).append(number)
    share = Results({**record, "shard": list(plan.shard), "models": models})
    if plan.cluster is None:
        return finish(share, plan.output_dir, None, checkpoints)
    return gather(share, plan, checkpoints)


def claim_checkpoints(checkpoints: Path, plan: Plan) -> None:
    """Records the plan beside its checkpoints; resuming, refuses checkpoints another plan
    made (other techniques, grid, regimes, seeds, settings or share), naming the first
    difference, before anything trains or is deleted."""
    mine = json.loads(json.dumps(identity(plan)))  # as JSON reads it back
    path = checkpoints / PLAN
    if plan.resume and path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot read the plan of these checkpoints ({e}); "
                                  "start again with --overwrite") from None
        changed = difference(saved, mine)
        if changed is not None:
            raise CheckpointError(f"{checkpoints}: the checkpoints were made by another plan: "
                                  f"{changed}; resume with the same flags as the run that "
                                  "made them, or start again with --overwrite")
        return
    if plan.resume and outdir.saved_epochs(checkpoints):
        raise CheckpointError(f"{checkpoints}: the checkpoints do not record their plan (an "
                              "older regjax wrote them); start again with --overwrite")
    checkpoints.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, mine)


def finish(results: Results, out: Path | None, how: str | None, checkpoints) -> Results:
    """results.json (and the report, unless a share) written, then the checkpoints go."""
    if out is not None:
        results.save(out, how=how, _locked=True)
        shutil.rmtree(checkpoints, ignore_errors=True)
    return results


def gather(share: Results, plan: Plan, checkpoints: Path) -> Results:
    """The shares of a distributed run collected on process 0, which reports; every process
    deletes its checkpoints once the report is written."""
    everyone = distributed.gather_json(share.record)  # a collective: every process joins
    index, count = plan.shard
    out = plan.output_dir
    if index:
        # Process 0 holds this share in memory until the report is written; were it to fail
        # before, this process's checkpoints resume it. It leaves nothing else behind.
        distributed.barrier("report written")
        shutil.rmtree(checkpoints, ignore_errors=True)
        for directory in (out / CHECKPOINTS, out):
            try:
                directory.rmdir()
            except OSError:  # not empty: process 0's, on a shared file system
                break
        return share
    merged = Results(shards.merge_results([(f"process {i}", r) for i, r in enumerate(everyone)]))
    merged.save(out, how=f"{devices.this_machine()} per process, {count} processes", _locked=True)
    distributed.barrier("report written")  # then every process deletes its checkpoints
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return merged


def merge(directories: list[Path], output_dir: Path, script: str,
          overwrite: bool = False) -> Results:
    """The shares' results in `directories` merged and reported in `output_dir`; every share
    is read and checked before the output directory is touched."""
    if any(Path(d).resolve() == Path(output_dir).resolve() for d in directories):
        raise shards.MergeError(f"--output-dir {output_dir} is one of the shares being "
                                "merged: write the report to another directory")
    results = Results(shards.merge(directories, script))
    results.save(output_dir, how=shards.describe(results.record["code"], len(directories)),
                 overwrite=overwrite)
    return results


def train_groups(batches: list[Batch], dataset: data.Dataset, progress: bool | None,
                 checkpoints: Path | None = None, resume: bool = False,
                 should_stop=lambda: False, ensemble: bool = False, model=None):
    """Trains each batch as one vmapped program; returns the runs of each group, each
    group's batch wall time, and whether a stop was asked (the batches after it are not
    started). With `checkpoints`, batch k is checkpointed after every epoch in
    checkpoints/batch-k, and `resume` continues each batch from its checkpoints (one that
    finished is only restored and evaluated). `progress`: a bar over every batch's epochs
    (None: on a terminal only)."""
    lengths = [max(c.epochs for _, c in members) for _, members in batches]
    bar = tqdm(total=sum(lengths), unit="epoch", disable=None if progress is None
               else not progress, dynamic_ncols=True)
    groups: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    interrupted = False
    for k, (label, members) in enumerate(batches):
        before = sum(lengths[:k])  # the epochs of the batches before this one
        bar.set_description(label)
        configs = [c for _, c in members]
        train, val = map(list, zip(*(data.model_data(c, dataset) for c in configs)))
        saved = None if checkpoints is None else Checkpoints(checkpoints / f"batch-{k}",
                                                             keep=KEEP)
        start = time.perf_counter()
        try:
            histories = fit_batched(
                configs, train, val, dataset.test, checkpoints=saved,
                resume=resume and saved is not None and bool(saved.all_epochs()),
                should_stop=should_stop, ensemble=ensemble, model=model,
                on_epoch=lambda done, total: bar.update(before + done - bar.n))
        finally:
            if saved is not None:
                saved.close()
        interrupted = any(h["status"] == "interrupted" for h in histories)
        if not interrupted:  # early stopping may end a batch before its last epoch
            bar.update(before + lengths[k] - bar.n)
        seconds = time.perf_counter() - start
        for (name, _), history in zip(members, histories):
            groups.setdefault(name, []).append(history)
            wall[name] = seconds
        if interrupted:
            break
    bar.close()
    return groups, wall, interrupted
