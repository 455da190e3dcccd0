"""Plants defects in a copy of the repository, one at a time, and runs the tests that should
catch each: a test that still passes with its defect planted proves nothing.

    python tests/plant_defects.py            # every defect below
    python tests/plant_defects.py 3 7        # defects 3 and 7 only
    python tests/plant_defects.py --list

Each defect is a small source change (the text it replaces must occur exactly once). The
copy is made from the files git tracks, so the working tree is never touched. Exit status:
0 when every planted defect made its tests fail, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).parents[1]
TIMEOUT = 600  # seconds for one defect's tests


class Defect(NamedTuple):
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


DEFECTS = [
    Defect("a batched model gets its neighbour's knobs", "regjax/train/engine.py",
           "self.knobs = jax.device_put(Knobs.of(self.configs), self.per_model)",
           "self.knobs = jax.device_put(Knobs.of(self.configs[1:] + self.configs[:1]), "
           "self.per_model)",
           ("tests/test_batched.py::test_each_batched_model_follows_its_single_run",)),
    Defect("the checkpoints are deleted before results.json is written",
           "regjax/experiment/runner.py",
           "    if out is not None:\n        results.save(",
           "    if out is not None:\n        shutil.rmtree(checkpoints, ignore_errors=True)\n"
           "        results.save(",
           ("tests/test_faults.py::test_a_crash_before_the_report_keeps_the_checkpoints_and"
            "_resumes",)),
    Defect("a checkpoint does not check its data", "regjax/train/resume.py",
           'if record["data"] != data:', "if False:",
           ("tests/test_faults.py::test_resuming_on_other_data_of_the_same_size_is_refused",)),
    Defect("a stop marks every model interrupted", "regjax/train/loop.py",
           "r.finish(interrupted and r.trains_on)", "r.finish(interrupted)",
           ("tests/test_faults.py::test_a_stop_keeps_the_models_that_had_finished",)),
    Defect("a resumed batch's progress starts at 1", "regjax/train/loop.py",
           "        io.on_epoch(run.records)  # where the run stands", "        pass  #",
           ("tests/test_faults.py::test_a_resumed_batch_counts_its_epochs_from_the_checkpoint",)),
    Defect("a checkpoint error hides the error in flight", "regjax/train/loop.py",
           "            with contextlib.suppress(CheckpointError):\n"
           "                io.checkpoints.wait()",
           "            io.checkpoints.wait()",
           ("tests/test_faults.py::test_a_checkpoint_error_does_not_hide_the_error_in_flight",)),
    Defect("a second signal waits for the program to return", "regjax/cli/common.py",
           "                os._exit(128 + signum)", "                pass",
           ("tests/test_faults.py::test_a_second_signal_stops_a_compiled_program_at_once",)),
    Defect("the first epoch is no improvement under an infinite min_delta",
           "regjax/techniques/early_stopping.py",
           "if self.best is None or value + self.min_delta < self.best:",
           "if value + self.min_delta < (math.inf if self.best is None else self.best):",
           ("tests/test_history.py::test_early_stopping_matches_keras_on_random_sequences",)),
    Defect("a shift range of pixels read as a fraction", "regjax/nn/augment.py",
           "return jnp.where(shift_range < 1, size, 1)", "return size",
           ("tests/test_augment.py::test_parameter_draws_match_keras_get_random_transform",)),
    Defect("the moving average and best weights left out of the estimates",
           "regjax/train/budget.py",
           "return nbytes(state), nbytes(state.params), nbytes((state.params, state.batch_stats))",
           "return 3 * nbytes(state.params), nbytes(state.params), nbytes(state.params)",
           ("tests/test_faults.py::test_the_estimates_count_every_copy_of_the_weights",)),
    Defect("noise drawn from random erasing's branch", "regjax/techniques/gaussian_noise.py",
           "order=5, branch=2,", "order=5, branch=4,",
           ("tests/test_rng.py::test_sibling_branches_have_different_numbers",)),
    Defect("padded rows enter the loss", "regjax/train/step.py",
           "total = jnp.sum(per_example * weights)", "total = jnp.sum(per_example)",
           ("tests/test_step.py::test_partial_last_batch_counts_every_row_once",)),
    Defect("power computed at the 10% level", "regjax/reports/stats.py",
           "z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)",
           "z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)",
           ("tests/test_compare.py::test_compare_report_matches_its_histories_and_writes_plots",)),
    Defect("non-finite knobs accepted", "regjax/config.py",
           "if name != \"min_delta\" and not (math.isfinite(value)",
           "if False and not (math.isfinite(value)",
           ("tests/test_cli.py::test_bad_input_is_one_line_without_traceback",)),
    Defect("a merge may write over one of its own shares", "regjax/experiment/runner.py",
           "if any(Path(d).resolve() == Path(output_dir).resolve() for d in directories):",
           "if False:",
           ("tests/test_shards.py::test_a_merge_reads_every_share_before_it_touches_the_output",)),
    Defect("a study's label noise applied to seed 0 only", "regjax/experiment/study.py",
           "model = dataclasses.replace(config, train_size=size, label_noise=noise,",
           "model = dataclasses.replace(config, train_size=size, label_noise=noise * (seed == 0),",
           ("tests/test_study.py::test_every_cell_equals_what_compare_gives_in_its_regime",)),
    Defect("the study map corrected by Bonferroni, not Holm", "regjax/reports/study.py",
           "running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))",
           "running = min(1.0, len(p_values) * p_values[i])",
           ("tests/test_study.py::test_holm_matches_its_definition",)),
    # Part 3: each technique broken where it acts, its reference test run.
    Defect("Gaussian dropout's standard deviation without the square root",
           "regjax/techniques/gaussian_dropout.py",
           "stddev = jnp.sqrt(rate / (1.0 - rate))", "stddev = rate / (1.0 - rate)",
           ("tests/test_part3.py::test_gaussian_dropout_draws_as_keras_gaussian_dropout_does",)),
    Defect("Gaussian dropout's noise shared by every hidden layer",
           "regjax/techniques/gaussian_dropout.py",
           "config.gaussian_dropout, position=STREAM + position)",
           "config.gaussian_dropout, position=STREAM)",
           ("tests/test_part3.py::test_the_mlp_multiplies_each_hidden_layer_by_its_own_noise"
            "_in_training_only",)),
    Defect("the activity penalty on the mean square, not the sum per example",
           "regjax/techniques/activity_l2.py",
           "squares = jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=-1)",
           "squares = jnp.mean(jnp.square(x).reshape(x.shape[0], -1), axis=-1)",
           ("tests/test_step.py::test_training_steps_match_keras_train_on_batch[activity_l2]",)),
    Defect("the orthogonal penalty over columns instead of rows",
           "regjax/techniques/orthogonal.py",
           "for k in kernels if k.ndim == 2)", "for k in kernels if k.ndim == 2 for k in [k.T])",
           ("tests/test_step.py::test_training_steps_match_keras_train_on_batch[orthogonal]",)),
    Defect("gradient noise not annealed", "regjax/techniques/gradient_noise.py",
           "stddev = jnp.sqrt(eta / count.astype(jnp.float32) ** gamma)",
           "stddev = jnp.sqrt(eta)",
           ("tests/test_part3.py::test_gradient_noise_follows_optax_add_noise",)),
    Defect("gradient noise added after Adam", "regjax/techniques/gradient_noise.py",
           "place=\"gradient\", order=2, branch=BRANCH,\n    gradient=lambda",
           "place=\"update\", order=0, branch=BRANCH,\n    update=lambda",
           ("tests/test_part3.py::test_gradient_noise_is_added_before_adam",)),
    Defect("SAM's ascent along the raw gradient, not the normalised one",
           "regjax/techniques/sam.py",
           "ascent = jax.tree.map(lambda w, g: w + rho * (g / norm), params, grads)",
           "ascent = jax.tree.map(lambda w, g: w + rho * g, params, grads)",
           ("tests/test_part3.py::test_sam_steps_match_optax_contrib_sam",)),
    Defect("SAM's ascent pass updating the batch statistics", "regjax/train/step.py",
           "grads, (batch_stats, metrics) = gradient(state.params)",
           "grads, (_, metrics) = gradient(state.params)\n    batch_stats = gradient("
           "jax.tree.map(lambda w: w + 1e-3, state.params))[1][0]",
           ("tests/test_part3.py::test_sam_steps_match_optax_contrib_sam",)),
    Defect("stochastic depth at the full rate in every block",
           "regjax/techniques/stochastic_depth.py",
           "return drop_path(x, rate * self.depth, key)", "return drop_path(x, rate, key)",
           ("tests/test_resnet.py::test_each_block_drops_with_a_rate_growing_linearly_to_p",)),
    Defect("stochastic depth's kept branches not scaled", "regjax/techniques/stochastic_depth.py",
           "return jnp.where(kept, x / keep, jnp.zeros_like(x))",
           "return jnp.where(kept, x, jnp.zeros_like(x))",
           ("tests/test_resnet.py::test_drop_path_is_timms_formula",)),
    Defect("the resnet's projection shortcut without its batch norm", "regjax/models/resnet.py",
           "x = layer(x)\n        return nnx.relu(x + y)",
           "x = layer(x) if isinstance(layer, Conv) else x\n        return nnx.relu(x + y)",
           ("tests/test_resnet.py::test_the_resnet_computes_what_the_same_network_in_keras_computes",)),
]


def planted_copy(defect: Defect, directory: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    source = directory / defect.path
    text = source.read_text()
    if text.count(defect.old) != 1:
        raise SystemExit(f"{defect.path}: the text to replace occurs {text.count(defect.old)} "
                         f"times (defect: {defect.what}); update this script")
    source.write_text(text.replace(defect.old, defect.new))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("numbers", nargs="*", type=int, help="defects to plant (default: all)")
    p.add_argument("--list", action="store_true", help="list the defects and exit")
    args = p.parse_args(argv)
    if args.list:
        for i, d in enumerate(DEFECTS):
            print(f"{i:2d}  {d.what}  ({d.path}; {', '.join(d.tests)})")
        return 0
    caught = True
    for i in args.numbers or range(len(DEFECTS)):
        defect = DEFECTS[i]
        with tempfile.TemporaryDirectory() as tmp:
            planted_copy(defect, Path(tmp))
            try:
                result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n",
                                         "0", "-p", "no:cacheprovider", *defect.tests],
                                        cwd=tmp, capture_output=True, text=True,
                                        timeout=TIMEOUT)
                failed = result.returncode == 1
                last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
            except subprocess.TimeoutExpired:  # a defect that hangs is not a caught one
                failed, last = False, f"no result within {TIMEOUT} s"
        caught &= failed
        print(f"{i:2d} {'caught' if failed else 'MISSED'}: {defect.what} -> {last}", flush=True)
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
