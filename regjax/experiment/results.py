"""One experiment's results: the record results.json holds (the command, the data, the code's
versions, what the plan recorded about itself, and every run's history by setting), with the
report, its table and its plots derived from it.

    results = regjax.compare(["baseline", "dropout"], seeds=5, epochs=5)
    results.table()          # a row per setting (a DataFrame if pandas is installed)
    results.plot()           # {file name: matplotlib Figure}; a notebook shows them inline
    results.save("runs/c")   # results.json, report.md and the plots
    regjax.Results.load("runs/c")
"""

from __future__ import annotations

import json
from pathlib import Path

from regjax.files.outdir import EXPERIMENT_FILES, RESULTS
from regjax.reports import documents


def check_record(record) -> None:
    """Refuses what is not an experiment's record (compare.py's, sweep.py's or study.py's
    results.json): a train.py run's history.json, say."""
    if not isinstance(record, dict):
        raise TypeError(f"record must be a results.json's record (a dict), got "
                        f"{type(record).__name__}")
    groups = record.get("groups")
    if not isinstance(groups, dict) or not all(
            isinstance(g, dict) and isinstance(g.get("runs"), list) for g in groups.values()):
        what = ("a run's history (history.json: read it with json.load, plot it with "
                "regjax.plot)") if "epochs_run" in record else "no groups of runs"
        raise ValueError(f"not the results of compare, sweep or study: {what}")
    missing = [k for k in ("command", "dataset", "data_source") if k not in record]
    if missing:
        raise ValueError(f"not the results of compare, sweep or study: no {', '.join(missing)}")


class Results:
    """The record of a comparison or sweep (or of one share of it: `shard` is then set)."""

    def __init__(self, record: dict, finished_before: bool = False):
        check_record(record)
        self.record = record
        self.finished_before = finished_before  # a share resumed after it had finished
        self.saved: list[str] = []  # the files the last save() wrote

    @property
    def kind(self) -> str:
        return documents.kind(self.record)

    @property
    def shard(self) -> tuple[int, int] | None:
        return tuple(self.record["shard"]) if "shard" in self.record else None

    @property
    def groups(self) -> dict[str, list[dict]]:
        """Each setting's runs (histories, as regjax.fit returns them), seeds in order."""
        return documents.groups_of(self.record)

    def models(self) -> int:
        return sum(len(runs) for runs in self.groups.values())

    def rows(self) -> list[dict]:
        """A row of statistics per setting, as the report's table shows them."""
        return documents.rows(self.record)

    def table(self):
        """rows() as a pandas DataFrame where pandas is installed, else the list itself."""
        try:
            import pandas
        except ImportError:
            return self.rows()
        flat = [{k: v for k, v in row.items() if not isinstance(v, dict)} for row in self.rows()]
        return pandas.DataFrame(flat)

    def markdown(self) -> str:
        """The report's table(s) in markdown."""
        return documents.table_text(self.record)

    def plot(self) -> dict:
        """The report's plots as matplotlib Figures, by file name."""
        return documents.figures(self.record)

    def save(self, directory, *, how: str | None = None, overwrite: bool = False,
             _locked: bool = False) -> list[str]:
        """Writes results.json (atomically) and, unless this is a share, report.md and its
        plots into `directory`; returns the names written. `how`: where the results came
        from, for the report (default: this machine). A directory holding another run's
        outputs is refused unless `overwrite`."""
        from regjax.files import atomic, outdir

        out = Path(directory)
        if out.suffix == ".json":
            raise ValueError(f"save takes a directory (it writes {RESULTS}, the report and "
                             f"the plots there), got the file name {out}: give {out.parent}")
        lock = None if _locked else outdir.prepare_output_dir(
            out, resume=False, overwrite=overwrite, needed_bytes=10_000_000, owned=EXPERIMENT_FILES)
        try:
            atomic.write_json(out / RESULTS, self.record)
            self.saved = [RESULTS]
            if self.shard is None:
                if how is None:
                    from regjax.train.devices import this_machine

                    how = this_machine()
                self.saved = [*documents.write(self.record, out, how), RESULTS]
            return self.saved
        finally:
            if lock is not None:
                lock.release()

    @classmethod
    def load(cls, directory, finished_before: bool = False) -> "Results":
        """The results in `directory`/results.json (or at that path)."""
        path = Path(directory)
        path = path / RESULTS if path.is_dir() else path
        try:
            record = json.loads(path.read_text())
        except ValueError as e:  # not JSON, or not text
            raise ValueError(f"{path}: not a results.json ({e})") from None
        try:
            return cls(record, finished_before)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        share = "" if self.shard is None else f", share {self.shard[0]}/{self.shard[1]}"
        return (f"<Results of {self.kind}: {len(self.groups)} settings, {self.models()} "
                f"models{share}>")
