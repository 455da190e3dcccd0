"""A comparison or sweep split into shares (--shard I/N) and merged (--merge): the same
histories, bitwise, and the same report as one process; shares that do not fit together
refused in one line."""

import json
import shutil

import jax
import pytest

from regjax import data
from regjax.cli.compare import compare_main
from regjax.cli.sweep import sweep_main
from regjax.data.split import Split
from regjax.experiment.runner import train_groups
from regjax.experiment.shards import parse_shard, share_command, take
from regjax.presets import preset
from tests import rounding
from tests.helpers import without_timing
from tests.test_compare import table_rows

# Three models (shares of two and one), two epochs: enough to merge out of order and to stop
# and resume mid-run, while the suite stays short (each run compiles its program).
COMPARE = ["--techniques", "dropout", "--seeds", "3", "--epochs", "2", "--quiet"]


def run(main, args, out, *extra):
    assert main([*args, "--output-dir", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def histories(results):
    return {name: [without_timing(r) for r in group["runs"]]
            for name, group in results["groups"].items()}


@pytest.fixture(scope="module")
def compared(tmp_path_factory, fashion):
    """One comparison run whole and in two shares (share 1 merged first: order must not
    matter), on 300 real training rows."""
    from tests.helpers import write_idx_dir

    root = tmp_path_factory.mktemp("shards")
    data = write_idx_dir(root / "idx", Split(fashion.train.images[:300],
                                                 fashion.train.labels[:300]),
                         Split(fashion.test.images[:100], fashion.test.labels[:100]))
    args = [*COMPARE, "--data-dir", str(data)]
    whole = run(compare_main, args, root / "whole")
    for i in range(2):
        run(compare_main, args, root / f"share{i}", "--shard", f"{i}/2")
    merged = run(compare_main, [], root / "merged", "--merge", str(root / "share1"),
                 str(root / "share0"))
    return root, whole, merged, data


def test_shares_merged_equal_the_one_process_run(compared):
    root, whole, merged, data_dir = compared
    if jax.default_backend() == "cpu":
        assert histories(merged) == histories(whole)  # every model, bitwise, in order
    else:  # a GPU may pick other kernels for a program of fewer models: float32 rounding,
        # carried through two epochs of Adam steps, bounded as measured by tests/rounding.py
        dataset = data.read_idx_dataset("fashion_mnist", data_dir)
        for ours, theirs in zip(merged["groups"]["dropout"]["runs"],
                                whole["groups"]["dropout"]["runs"]):
            config = preset("dropout", seed=theirs["config"]["seed"], epochs=2)
            perturbed = [h for h, _ in rounding.perturbed_fits(
                config, *data.model_data(config, dataset), dataset.test)]
            rounding.assert_follows(ours, theirs, perturbed, len(dataset.test))
    same = lambda table: {k: v[:6] for k, v in table.items()}  # noqa: E731 (not wall time)
    assert same(table_rows((root / "merged" / "report.md").read_text())) == \
        same(table_rows((root / "whole" / "report.md").read_text()))


def test_sweep_shares_merge_into_one_sweep_report(tmp_path, tiny_idx_dir):
    args = ["--technique", "l2", "--values", "0,0.01", "--seeds", "1", "--epochs", "1",
            "--quiet", "--data-dir", str(tiny_idx_dir)]
    shares = [run(sweep_main, args, tmp_path / f"s{i}", "--shard", f"{i}/2") for i in (0, 1)]
    merged = run(sweep_main, [], tmp_path / "merged", "--merge", str(tmp_path / "s0"),
                 str(tmp_path / "s1"))
    assert [len(s["groups"]) for s in shares] == [1, 1]
    assert list(merged["groups"]) == ["l2=0", "l2=0.01"]
    report = (tmp_path / "merged" / "report.md").read_text()
    assert "| 0 | " in report and "| 0.01 | " in report and "no run completed" not in report


def test_shares_take_every_model_once_round_robin():
    batches = [("a", list(range(5))), ("b", list(range(5, 7)))]
    seen = []
    for i in range(3):
        mine, numbers = take(batches, (i, 3))
        assert numbers == list(range(i, 7, 3))
        assert [m for _, members in mine for m in members] == numbers
        seen += numbers
    assert sorted(seen) == list(range(7))
    with pytest.raises(ValueError, match="0 <= I < N"):
        parse_shard("2/2")
    with pytest.raises(ValueError, match="must be I/N"):
        parse_shard("half")


def test_shares_that_do_not_fit_together_are_refused_in_one_line(compared, tmp_path, capsys):
    root, _, _, _ = compared
    other = tmp_path / "other"  # share 1 of another command (--seeds 4)
    shutil.copytree(root / "share1", other)
    results = json.loads((other / "results.json").read_text())
    results["command"] = results["command"].replace("--seeds 3", "--seeds 4")
    (other / "results.json").write_text(json.dumps(results))
    for dirs, message in [([root / "share0", other], "come from different command"),
                          ([root / "share0"], "shares must be 0/2 to 1/2, each once; got 0/2"),
                          ([root / "share0", root / "share0"], "each once"),
                          ([root / "whole"], "not a share"),
                          ([tmp_path / "missing"], "cannot read a share's results")]:
        code = compare_main(["--merge", *map(str, dirs), "--output-dir", str(tmp_path / "out"),
                             "--overwrite"])
        err = capsys.readouterr().err.strip()
        assert code == 1 and message in err and len(err.splitlines()) == 1, err
    code = sweep_main(["--merge", str(root / "share0"), "--output-dir", str(tmp_path / "o2")])
    assert code == 1 and "merge with that script" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_main([*COMPARE, "--shard", "3/2"])
    assert "0 <= I < N" in capsys.readouterr().err


def test_a_finished_share_is_not_run_again(compared, capsys):
    root, _, _, data_dir = compared
    done = root / "share0" / "results.json"
    before = done.read_bytes(), done.stat().st_mtime_ns
    run(compare_main, [*COMPARE, "--data-dir", str(data_dir)], root / "share0", "--shard",
        "0/2", "--resume")
    assert "share 0/2 is already finished" in capsys.readouterr().out
    assert (done.read_bytes(), done.stat().st_mtime_ns) == before
    # A share resumed after a stop records the command its siblings record: --merge takes it.
    assert share_command("scripts/compare.py", [*COMPARE, "--resume", "--shard", "0/2"]) == \
        share_command("scripts/compare.py", [*COMPARE, "--shard", "1/2"])


def test_a_stopped_comparison_resumes_to_the_same_histories(compared, tmp_path):
    """Stopped after its first epoch, then resumed from the checkpoint: every history equals
    the uninterrupted run's, bitwise."""
    _, whole, _, data_dir = compared
    dataset = data.read_idx_dataset("fashion_mnist", data_dir)
    batches = [("dropout", [("dropout", preset("dropout", seed=seed, epochs=2))
                            for seed in range(3)])]
    calls = iter(range(100))
    _, _, interrupted = train_groups(batches, dataset, False, tmp_path, False,
                                     should_stop=lambda: next(calls) >= 1)
    assert interrupted
    assert sorted(p.name for p in (tmp_path / "batch-0").iterdir()) == ["1"]
    cap = iter(range(100))  # were a finished batch to train on, it would stop, not hang
    groups, _, interrupted = train_groups(batches, dataset, False, tmp_path, resume=True,
                                          should_stop=lambda: next(cap) >= 10)
    assert not interrupted
    resumed = {name: [without_timing(r) for r in runs] for name, runs in groups.items()}
    assert json.loads(json.dumps(resumed)) == histories(whole)  # as results.json holds them


def test_a_merge_reads_every_share_before_it_touches_the_output(compared, tmp_path, capsys,
                                                               monkeypatch):
    """Merging into a share's own directory is refused and the share is intact; a merge
    that fails leaves the report it would replace as it was; a merge, which writes no
    checkpoint, needs no room for any."""
    root = compared[0]
    shares = [str(root / "share0"), str(root / "share1")]
    before = (root / "share0" / "results.json").read_bytes()
    code = compare_main(["--merge", *shares, "--output-dir", shares[0], "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and "is one of the shares being merged" in err, err
    assert (root / "share0" / "results.json").read_bytes() == before
    out = tmp_path / "earlier"
    shutil.copytree(root / "merged", out)
    report = (out / "report.md").read_bytes()
    assert compare_main(["--merge", shares[0], str(root / "whole"), "--output-dir", str(out),
                         "--overwrite"]) == 1
    assert (out / "report.md").read_bytes() == report
    capsys.readouterr()
    free = type("Usage", (), {"free": 11_000_000})  # 1 MB more than the report needs
    monkeypatch.setattr("regjax.files.outdir.shutil.disk_usage", lambda path: free)
    assert compare_main(["--merge", *shares, "--output-dir", str(tmp_path / "m")]) == 0, \
        capsys.readouterr().err
