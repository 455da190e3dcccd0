"""The cross-framework benchmark scripts in their smoke mode: one tiny run each, peers that
are not installed skipped with a notice. Checks the shape of the output, never a timing."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
FRAMEWORKS = ("regjax", "keras-tensorflow", "keras-jax", "pytorch")
NUMBER = r"-?\d+(\.\d+)?"


def run(script, *args):
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args],
                          capture_output=True, text=True, timeout=900)


def test_compare_frameworks_smoke(tmp_path):
    out = tmp_path / "table.json"
    result = run("compare_frameworks.py", "--smoke", "--techniques", "baseline",
                 "--json", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {line.split()[1]: line.split() for line in lines if line.startswith("baseline ")}
    for framework in FRAMEWORKS:  # each one ran, or was skipped with a one-line notice
        skipped = [line for line in lines if line.startswith(f"# skipping {framework}:")]
        assert (framework in rows) != bool(skipped), result.stdout
    assert "regjax" in rows
    for cells in rows.values():
        # steps/epoch, epoch s, steps/s, best, first s, peak MB; sys %; test acc; speed-ups
        assert all(re.fullmatch(NUMBER, c) for c in cells[2:8]), cells
        assert re.fullmatch(r"\d+%", cells[8]) and re.fullmatch(NUMBER, cells[9]), cells
        assert all(re.fullmatch(NUMBER + "x", c) for c in cells[10:12]), cells
    assert rows["regjax"][10:12] == ["1.00x", "1.00x"]
    table = json.loads(out.read_text())["rows"]
    assert {r["framework"] for r in table} == set(rows)
    for r in table:
        assert r["steps_per_epoch"] == 8  # 600 rows less 20% validation, batch 64
        assert r["best_steps_per_second"] >= r["steps_per_second"] > 0
        assert 0 <= r["sys_share"] <= 1
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["peak_rss_mb"] > 0


def regjax_accuracy(technique: str, seed: int, epochs: int) -> float:
    import regjax
    from regjax import data
    from tests.helpers import FASHION_DIR

    full = data.read_idx_dataset("fashion_mnist", FASHION_DIR)
    dataset = data.Dataset("fashion_mnist", "600 rows", data.Split(
        full.train.images[:600], full.train.labels[:600]), data.Split(
        full.test.images[:100], full.test.labels[:100]))
    config = regjax.preset(technique, seed=seed, epochs=epochs)
    history, _ = regjax.fit(config, *data.train_and_validation(dataset, config.validation),
                            dataset.test, log=lambda _: None)
    return history["test_accuracy"]


def test_parity_keeps_every_run_and_trains_only_what_is_missing(tmp_path):
    """parity.py keeps each finished run in its runs file; started again it trains nothing
    it has; a run beside kept ones of other code is refused unless --allow-mixed, and the
    table then says so; --readme rewrites only the table's block."""
    runs, readme = tmp_path / "parity.json", tmp_path / "README.md"
    readme.write_text("before\n<!-- parity table: begin -->\nold\n<!-- parity table: end -->\n"
                      "after\n")
    args = ("--smoke", "--techniques", "early_stopping", "--runs", str(runs))
    first = run("parity.py", *args, "--readme", str(readme))
    assert first.returncode == 0, first.stderr
    kept = json.loads(runs.read_text())["runs"]
    sides = {r["framework"] for r in kept}
    assert "regjax" in sides and len(kept) == 2 * len(sides)
    assert all(r["epochs_run"] == 1 and len(r["code"]) == 12 and r["machine"] for r in kept)
    # What the benchmark calls regjax is regjax: each seed's test accuracy is what regjax.fit
    # gives for the preset on the same rows (the first 600 training rows, 100 test rows).
    for r in kept:
        if r["framework"] == "regjax":
            assert r["test_accuracy"] == regjax_accuracy(r["technique"], r["seed"], epochs=1)
    page = readme.read_text()
    assert page.startswith("before\n") and page.endswith("after\n") and "\nold\n" not in page
    assert f"| early_stopping | 2 / {2 if len(sides) == 2 else 0} |" in page

    again = run("parity.py", *args)
    assert again.returncode == 0 and "0 runs to train" in again.stdout, again.stderr
    assert json.loads(runs.read_text())["runs"] == kept

    kept[0]["code"] = "0" * 12  # a run made by other code, and a regjax seed left to run
    runs.write_text(json.dumps({"runs": [kept[0]] + [r for r in kept[1:]
                                                     if r["framework"] != "regjax"]}))
    refused = run("parity.py", *args)
    assert refused.returncode == 2 and "other code" in refused.stderr, refused.stderr
    mixed = run("parity.py", *args, "--allow-mixed")
    assert mixed.returncode == 0 and "mixed code" in mixed.stdout, mixed.stderr
    assert len(json.loads(runs.read_text())["runs"]) == len(kept)


def test_the_keras_reference_reshuffles_every_epoch_reproducibly():
    """The parity reference trains as the notebook does: every epoch of model.fit sees each
    row once, in a new order, and the same seed gives the same orders (a seeded
    fit(shuffle=True) on TensorFlow replays one order; benchmarks/peers.py says why)."""
    import keras

    sys.path.insert(0, str(BENCHMARKS))
    import peers

    def epoch_orders(seed):  # as peers.run_keras seeds a run
        keras.utils.set_random_seed(seed)
        x, y = np.arange(20, dtype=np.float32)[:, None], np.zeros((20, 1), np.float32)
        batches = peers.reshuffled_batches(x, y, 8, seed)
        edges = []
        mark = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda *_: edges.append(len(batches.served)),
            on_epoch_end=lambda *_: edges.append(len(batches.served)))
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(batches, epochs=3, callbacks=[mark], verbose=0)
        return [np.concatenate(batches.served[a:b]) for a, b in zip(edges[::2], edges[1::2])]

    orders = epoch_orders(seed=0)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(20))  # each row once
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    for a, b in zip(orders, epoch_orders(seed=0)):
        np.testing.assert_array_equal(a, b)


def test_study_cost_smoke():
    """study_cost.py trains the same models as a study, as compare.py per regime and as
    train.py per model, and tabulates the three (the figures are never checked)."""
    result = run("study_cost.py", "--techniques", "dropout", "--train-size", "500",
                 "--label-noise", "0", "--seeds", "1", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "2 models" in result.stdout
    ways = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")
            and line.split(" | ")[0] in ("| study.py", "| compare.py per regime",
                                          "| train.py per model")]
    assert len(ways) == 3 and ways[0][3] == "1.00 |", result.stdout
    assert all(re.fullmatch(NUMBER, cell) for way in ways for cell in way[1:3]), result.stdout
