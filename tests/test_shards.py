"""A comparison or sweep split into shares (--shard I/N) and merged (--merge): the same
histories, bitwise, and the same report as one process; shares that do not fit together
refused in one line."""

import json

import pytest

from regjax.compare import compare_main
from regjax.shards import parse_shard, take
from regjax.sweep import sweep_main
from tests.helpers import without_timing
from tests.test_compare import table_rows

COMPARE = ["--techniques", "baseline,dropout", "--seeds", "3", "--epochs", "1", "--quiet"]
SWEEP = ["--technique", "l2", "--values", "0,0.01", "--seeds", "2", "--epochs", "1", "--quiet"]


def run(main, args, data_dir, out, *extra):
    assert main([*args, "--data-dir", str(data_dir), "--output-dir", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def histories(results):
    return {name: [without_timing(r) for r in group["runs"]]
            for name, group in results["groups"].items()}


@pytest.mark.parametrize("main,args", [(compare_main, COMPARE), (sweep_main, SWEEP)])
def test_shares_merged_equal_the_one_process_run(tmp_path, tiny_idx_dir, main, args):
    whole = run(main, args, tiny_idx_dir, tmp_path / "whole")
    for i in range(2):
        run(main, args, tiny_idx_dir, tmp_path / f"share{i}", "--shard", f"{i}/2")
    merged = run(main, [], None, tmp_path / "merged", "--merge", str(tmp_path / "share1"),
                 str(tmp_path / "share0"))
    assert histories(merged) == histories(whole)  # every model, bitwise, in order
    same = lambda table: {k: v[:6] for k, v in table.items()}  # noqa: E731 (not wall time)
    assert same(table_rows((tmp_path / "merged" / "report.md").read_text())) == \
        same(table_rows((tmp_path / "whole" / "report.md").read_text()))


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


def test_shares_that_do_not_fit_together_are_refused_in_one_line(tmp_path, tiny_idx_dir,
                                                                  capsys):
    run(compare_main, COMPARE, tiny_idx_dir, tmp_path / "a", "--shard", "0/2")
    other = [*COMPARE[:3], "2", *COMPARE[4:]]  # --seeds 2: another command
    run(compare_main, other, tiny_idx_dir, tmp_path / "b", "--shard", "1/2")
    run(compare_main, COMPARE, tiny_idx_dir, tmp_path / "whole")
    capsys.readouterr()
    for dirs, message in [(["a", "b"], "come from different command"),
                          (["a"], "shares must be 0/2 to 1/2, each once; got 0/2"),
                          (["a", "a"], "each once"),
                          (["whole"], "not a share"),
                          (["missing"], "cannot read a share's results")]:
        code = compare_main(["--merge", *(str(tmp_path / d) for d in dirs),
                             "--output-dir", str(tmp_path / "out"), "--overwrite"])
        err = capsys.readouterr().err.strip()
        assert code == 1 and message in err and len(err.splitlines()) == 1, err
    code = sweep_main(["--merge", str(tmp_path / "a"), "--output-dir", str(tmp_path / "o2")])
    assert code == 1 and "merge with that script" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_main([*COMPARE, "--shard", "3/2"])
    assert "0 <= I < N" in capsys.readouterr().err
