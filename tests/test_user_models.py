"""A model of the user's own, written as flax's examples write one, trained on data given as
Keras' load_data() returns it: the techniques that act outside the model work on it (each
model of a comparison equal to its own single run), its L2 term is numpy's over its kernels,
images of three channels go through every input transform as numpy computes them, and what
such a model or data gets wrong is refused before anything trains or is written."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from keras.src.legacy.preprocessing.image import apply_affine_transform

import regjax
from regjax import rng
from regjax.config import Knobs
from regjax.data.split import DataSpec
from regjax.nn import augment, mixing
from regjax.presets import preset
from regjax.techniques import BY_NAME
from regjax.techniques.dropout import Dropout
from regjax.train import step
from tests.helpers import TIMINGS, quiet


class SmallCNN(nnx.Module):
    """As flax's examples/mnist writes its CNN: nnx.Conv, pooling, nnx.Linear."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.linear = nnx.Linear(4 * 14 * 14, 16, rngs=rngs)
        self.out = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv(x)), window_shape=(2, 2), strides=(2, 2))
        return self.out(nnx.relu(self.linear(x.reshape(x.shape[0], -1))))


def keras_arrays(fashion, n=640):
    """Fashion-MNIST as keras.datasets.fashion_mnist.load_data() returns it: uint8 [N, 28, 28]
    images without a channel axis, integer labels."""
    return ((fashion.train.images[:n, ..., 0], fashion.train.labels[:n]),
            (fashion.test.images[:200, ..., 0], fashion.test.labels[:200]))


TECHNIQUES = ["l2", "label_smoothing", "mixup", "weight_ema", "early_stopping"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="bit for bit on a CPU, where a "
                    "device trains its models one after another (test_batched.py bounds "
                    "the rounding elsewhere)")
def test_a_user_model_trains_with_the_techniques_that_act_outside_it(fashion):
    data = keras_arrays(fashion)
    settings = dict(epochs=2, patience=1)
    results = regjax.compare(TECHNIQUES, seeds=2, model=SmallCNN, data=data, progress=False,
                             **settings)
    for technique in TECHNIQUES:
        for seed, run in enumerate(results.groups[technique]):
            config = preset(technique, seed=seed, **settings)
            alone, _ = regjax.fit(config, data=data, model=SmallCNN, log=quiet)
            mine = {k: v for k, v in run.items() if k not in TIMINGS}
            assert mine == {k: v for k, v in alone.items() if k not in TIMINGS}, technique
            assert run["config"]["model"] == "custom"
    # The techniques change what the model learns: no two settings train the same.
    losses = {t: results.groups[t][0]["loss"] for t in TECHNIQUES}
    assert len({tuple(v) for v in losses.values()}) == len(TECHNIQUES) - 1  # ES = baseline
    assert results.record["model"] == "SmallCNN"


def test_the_l2_term_on_a_user_model_is_numpys_sum_over_its_kernels(fashion):
    """Without a regularized_kernels() method, the kernels of every nnx.Conv and nnx.Linear
    but the output layer: here the convolution's and the hidden Linear's."""
    spec = DataSpec((28, 28, 1), 10)
    config = preset("l2", model="custom", l2=0.01)
    program = step.program_of(config, spec, SmallCNN)
    state, rest = step.initial_state(program, config, maker=SmallCNN)
    images = fashion.train.images[:16].astype(np.float32) / 255
    labels = fashion.train.labels[:16]

    def loss(l2):
        knobs = Knobs.of(preset("l2", model="custom", l2=l2))
        return float(step.loss(program, state.params, state.batch_stats, rest, images, labels,
                               jnp.ones(16), None, knobs, train=False)[0])

    params = state.params
    kernels = [np.asarray(params["conv"]["kernel"][...], np.float64),
               np.asarray(params["linear"]["kernel"][...], np.float64)]
    expected = 0.01 * sum(np.sum(k ** 2) for k in kernels)
    assert loss(0.01) - loss(0.0) == pytest.approx(expected, rel=1e-5)
    output = 0.01 * np.sum(np.asarray(params["out"]["kernel"][...], np.float64) ** 2)
    assert abs(loss(0.01) - loss(0.0) - expected - output) > 100 * 1e-5 * expected  # it bites


# ------------------------------------------------------------------ three-channel images

def rgb_batch(n=8, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def hook(name):
    """The technique's input transform on a batch, at its preset's value, drawing from the
    branch of a step key its module declares."""
    technique = BY_NAME[name]
    key = rng.technique_key(jax.random.key(7), technique.branch)
    knobs = Knobs.of(preset(name))

    def apply(x, weights):
        return technique.inputs(key, jnp.asarray(x), jnp.asarray(weights), knobs, None)

    return key, apply


def test_three_channel_images_through_every_input_transform_as_numpy_computes_them():
    x = rgb_batch()
    weights = np.ones(len(x), np.float32)
    # The affine warp: the same transform for each image's three channels, as Keras'
    # apply_affine_transform (scipy) warps an RGB image.
    key, apply = hook("augmentation")
    warped, _ = apply(x, weights)
    p = augment.sample_affine_params(key, len(x), 32, 32, rotation_range=10,
                                     shift_range=0.1, shear_range=0.2, zoom_range=0.2)
    for i, image in enumerate(x):
        theirs = apply_affine_transform(image.astype(np.float64), *[float(np.asarray(v)[i])
                                                                    for v in p],
                                        row_axis=0, col_axis=1, channel_axis=2,
                                        fill_mode="nearest", order=1)
        np.testing.assert_allclose(np.asarray(warped[i]), theirs, atol=2e-5)
    # Random erasing: a box of every channel of the chosen images replaced by the noise.
    key, apply = hook("random_erasing")
    erased, _ = apply(x, weights)
    bounds, applied, fill = augment.erasing_draws(key, x.shape, 1.0)
    x0, x1, y0, y1 = map(np.asarray, bounds)
    applied, fill = np.asarray(applied), np.asarray(fill)
    rows, columns = np.arange(32)[None, :, None], np.arange(32)[None, None, :]
    box = ((columns >= x0[:, None, None]) & (columns < x1[:, None, None])
           & (rows >= y0[:, None, None]) & (rows < y1[:, None, None]))
    expected = np.where((box & applied[:, None, None])[..., None], fill, x)
    np.testing.assert_array_equal(np.asarray(erased), expected)
    assert applied.any() and not applied.all()
    # MixUp: each image blended with its partner's, every channel with the same weight.
    _, apply = hook("mixup")
    mixed, (partner, lam) = apply(x, weights)
    lam, partner = np.asarray(lam)[:, None, None, None], np.asarray(partner)
    np.testing.assert_allclose(np.asarray(mixed), lam * x + (1 - lam) * x[partner], rtol=1e-6,
                               atol=1e-7)
    # CutMix: the box of every channel from the partner.
    key, apply = hook("cutmix")
    cut, (partner, lam) = apply(x, weights)
    partner, (x0, x1, y0, y1) = mixing.cutmix_draws(key, jnp.asarray(weights), 32, 32, 1.0)
    x0, x1, y0, y1, partner = map(np.asarray, (x0, x1, y0, y1, partner))
    box = ((columns >= x0[:, None, None]) & (columns < x1[:, None, None])
           & (rows >= y0[:, None, None]) & (rows < y1[:, None, None]))
    np.testing.assert_array_equal(np.asarray(cut), np.where(box[..., None], x[partner], x))
    np.testing.assert_allclose(np.asarray(lam), 1 - (x1 - x0) * (y1 - y0) / 1024, atol=1e-6)
    # Gaussian noise: N(0, 0.1) on every channel, jax.random.normal's draws.
    key, apply = hook("gaussian_noise")
    noisy, _ = apply(x, weights)
    np.testing.assert_allclose(np.asarray(noisy), x + 0.1 * np.asarray(
        jax.random.normal(key, x.shape)), rtol=1e-6, atol=1e-6)


def test_every_preset_trains_on_three_channel_images():
    """32x32x3 images of 10 classes (random, the shape of CIFAR-10's): every technique
    trains a step and evaluates, the MLP flattening, the CNN convolving three channels."""
    gen = np.random.default_rng(1)
    data = ((gen.integers(0, 256, (160, 32, 32, 3), np.uint8), gen.integers(0, 10, 160)),
            (gen.integers(0, 256, (40, 32, 32, 3), np.uint8), gen.integers(0, 10, 40)))
    results = regjax.compare("all", seeds=1, epochs=1, batch_size=64, hidden=(16,),
                             data=data, progress=False)
    for name, runs in results.groups.items():
        assert runs[0]["status"] == "completed", name
        assert np.isfinite(runs[0]["val_loss"][0]) and "test_accuracy" in runs[0], name


# ---------------------------------------------------------------------- what is refused

class FiveClasses(SmallCNN):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        self.out = nnx.Linear(16, 5, rngs=rngs)


class WithDropout(SmallCNN):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        self.dropout = Dropout(0.25, position=0)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv(x)), window_shape=(2, 2), strides=(2, 2))
        return self.out(self.dropout(nnx.relu(self.linear(x.reshape(x.shape[0], -1)))))


@pytest.mark.parametrize("technique, model, data, error, message", [
    ("l2", lambda rngs: "not a module", None, TypeError, "must build an nnx.Module"),
    ("l2", FiveClasses, None, ValueError, "returns (2, 5) for a batch of 2 images, not "
                                          "logits (2, 10)"),
    ("dropout", SmallCNN, None, ValueError, "holds no layer for dropout"),
    ("l2", SmallCNN, "mixed", ValueError, "the training images are [28, 28, 1] but the test "
                                          "images [32, 32, 1]"),
    ("l2", SmallCNN, "labels", ValueError, "labels must be classes 0-9, got 0..12"),
])
def test_what_a_user_model_or_data_gets_wrong_is_refused_before_training(
        tmp_path, fashion, technique, model, data, error, message):
    (x, y), (xt, yt) = keras_arrays(fashion)
    pattern = "".join("\\" + c if c in "()[]" else c for c in message)
    if data == "labels":  # the validation rows' labels beyond the training rows' 10 classes
        with pytest.raises(error, match=pattern):
            regjax.fit(preset(technique, epochs=1), (x, y),
                       (xt, np.where(np.arange(len(yt)) < 5, 12, yt)), model=model, log=quiet)
        return
    if data == "mixed":
        xt = np.zeros((len(xt), 32, 32), np.uint8)
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        regjax.compare([technique], seeds=1, epochs=1, model=model, data=((x, y), (xt, yt)),
                       output_dir=out, progress=False)
    assert not out.exists()


def test_a_technique_whose_layer_the_user_model_holds_is_a_knob_of_it(fashion):
    """regjax's Dropout in a user's model: the dropout technique's value reaches it (a sweep
    of the rate trains different models; rate 0 is the model without dropout)."""
    data = keras_arrays(fashion, 320)
    results = regjax.sweep("dropout", [0.0, 0.5], seeds=1, epochs=1, model=WithDropout,
                           data=data, progress=False)
    none, half = (results.groups[f"dropout={v}"][0] for v in ("0", "0.5"))
    assert none["loss"] != half["loss"]
    plain = regjax.compare(["baseline"], seeds=1, epochs=1, model=WithDropout, data=data,
                           progress=False).groups["baseline"][0]
    assert none["loss"] == plain["loss"]
