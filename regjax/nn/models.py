"""The notebook's models as Flax NNX modules, initialised as Keras does (glorot_uniform
kernels, zero biases) so results are comparable with the original."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from regjax import rng
from regjax.config import IMAGE_SHAPE, NUM_CLASSES, Config

# Keras BatchNormalization defaults (flax's epsilon is 1e-5).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
CONV_FILTERS = 32
# The CNN's features after the 3x3 'valid' convolution and the 2x2 pooling (5408).
CNN_FEATURES = ((IMAGE_SHAPE[0] - 2) // 2) * ((IMAGE_SHAPE[1] - 2) // 2) * CONV_FILTERS
# The convolution block's branch of a step's dropout key (the hidden layers take 0, 1, ...).
CONV_BLOCK = 2**16


def dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=nnx.initializers.glorot_uniform(),
                      bias_init=nnx.initializers.zeros_init(), rngs=rngs)


def spatial_dropout_maps(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """Keras' SpatialDropout2D on [B, H, W, C] maps: each (image, channel) map zeroed whole
    with probability `rate`, the kept ones scaled by 1 / (1 - rate). Applied after the
    pooling, which is the same as before it: a map's mask is one non-negative factor, which
    ReLU and max-pooling commute with."""
    keep = 1.0 - rate
    maps = rng.bernoulli(key, keep, (x.shape[0], x.shape[3]))
    # Through a product with the identity (exact for 0s and 1s): XLA computes a product
    # once, where it fused the mask's draw into the select below and drew each map's
    # number again for every one of its pixels (a third of a CNN step).
    maps = maps.astype(x.dtype) @ jnp.eye(x.shape[3], dtype=x.dtype) > 0.5
    return jax.lax.select(jnp.broadcast_to(maps[:, None, None, :], x.shape), x / keep,
                          jnp.zeros_like(x))


def inverted_dropout(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """Keras' (and nnx.Dropout's) dropout: zero each unit with probability `rate`, scale the
    kept ones by 1 / (1 - rate). `rate` may be a traced value."""
    keep = 1.0 - rate
    return jax.lax.select(rng.bernoulli(key, keep, x.shape), x / keep, jnp.zeros_like(x))


class DenseStack(nnx.Module):
    """Hidden Dense+ReLU layers, each optionally followed by BatchNorm and Dropout, then the
    output Dense layer producing logits (softmax lives in the loss)."""

    def __init__(self, in_features: int, config: Config, rngs: nnx.Rngs):
        sizes = (in_features, *config.hidden)
        self.hidden = nnx.List([dense(i, o, rngs) for i, o in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List(
            [nnx.BatchNorm(o, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
             for o in config.hidden] if config.batchnorm else [])
        self.dropout_rate = config.dropout  # 0: no dropout layers at all
        self.output = dense(sizes[-1], NUM_CLASSES, rngs)

    def __call__(self, x, *, train: bool, key=None, mask=None, dropout=None):
        return self.output(self.features(x, train=train, key=key, mask=mask, dropout=dropout))

    def features(self, x, *, train: bool, key=None, mask=None, dropout=None):
        """The last hidden layer's activations, after batch norm and dropout. `dropout`
        overrides the configured rate (it may be traced, e.g. one rate per vmapped model)."""
        for i, layer in enumerate(self.hidden):
            x = nnx.relu(layer(x))
            if self.norms:
                # Padded rows of a partial batch must not enter the batch statistics.
                x = self.norms[i](x, use_running_average=not train,
                                  mask=None if mask is None else mask[:, None])
            if train and self.dropout_rate > 0:
                rate = self.dropout_rate if dropout is None else dropout
                x = inverted_dropout(x, rate, jax.random.fold_in(key, i))
        return x


class MLP(nnx.Module):
    """Flatten -> DenseStack: the notebook's Dense(128)-Dense(64)-Dense(10)."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        self.head = DenseStack(IMAGE_SHAPE[0] * IMAGE_SHAPE[1], config, rngs)

    def __call__(self, images, *, train: bool, key=None, mask=None, dropout=None,
                 spatial_dropout=None):
        del spatial_dropout  # no feature maps (Config.validate refuses the combination)
        return self.head(images.reshape(images.shape[0], -1), train=train, key=key, mask=mask,
                         dropout=dropout)

    def regularized_kernels(self) -> list[jax.Array]:
        return [layer.kernel[...] for layer in self.head.hidden]


def pooled_patches(images: jax.Array) -> jax.Array:
    """The 3x3 patches under each 2x2 pooling window of [B, H, W] images, as
    [4 window corners, B*H'*W' windows, 9 taps] (H' = (H - 2) // 2, rows then columns):
    corner (di, dj) of window (i, j) is the convolution output at (2i + di, 2j + dj), whose
    tap (ki, kj) reads pixel (2i + di + ki, 2j + dj + kj). One gather of each image's
    pixels at a constant index table, which XLA compiles to a single loop."""
    b, h, w = images.shape
    ph, pw = (h - 2) // 2, (w - 2) // 2
    i, j = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
    index = np.stack([np.stack([(2 * i + di + ki) * w + 2 * j + dj + kj
                                for ki in range(3) for kj in range(3)], axis=-1).reshape(-1, 9)
                      for di in (0, 1) for dj in (0, 1)])  # [4, H'*W', 9]
    patches = jnp.take(images.reshape(b, h * w), jnp.asarray(index, jnp.int32), axis=1)
    return patches.transpose(1, 0, 2, 3).reshape(4, b * ph * pw, 9)


@jax.custom_vjp
def conv3x3_relu_maxpool(images: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """relu(Conv2D 3x3 'valid' + bias) followed by MaxPooling2D 2x2 (stride 2, 'valid') on
    [B, H, W] grayscale images, as Keras computes it; returns [B, H', W', F].

    The convolution is one product, patches [4 corners, windows, 9] @ kernel [9, F], and
    the pool an elementwise max over the four corners (relu and the bias commute with the
    max). Windows before filters is Keras' own layout, so Flatten needs no transposed copy
    in either direction. The gradient is written out (below) so that it reaches only the
    first maximal corner of each window, as TensorFlow's max pooling does (a blank image
    region gives four tied maxima), and so that the kernel's gradient is one product over
    all corners and windows. On CPU this is several times cheaper than lax.conv plus
    reduce_window and their gradients."""
    return _conv_block_fwd(images, kernel, bias)[0]


def _first_max(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The max over axis 0 and the index of its first maximal entry (int8)."""
    best, index = z[0], jnp.zeros(z[0].shape, jnp.int8)
    for k in range(1, z.shape[0]):
        better = z[k] > best  # strict: ties keep the earlier entry
        best = jnp.where(better, z[k], best)
        index = jnp.where(better, jnp.int8(k), index)
    return best, index


def _conv_block_fwd(images, kernel, bias):
    b, h, w = images.shape
    filters = kernel.shape[-1]
    patches = pooled_patches(images)  # [4, N, 9]
    best, index = _first_max(patches @ kernel.reshape(9, filters))  # [N, F]
    out = nnx.relu(best + bias)
    return out.reshape(b, (h - 2) // 2, (w - 2) // 2, filters), (images, kernel, patches, index,
                                                                 out)


def _conv_block_bwd(residuals, g):
    images, kernel, patches, index, out = residuals
    filters = kernel.shape[-1]
    g = jnp.where(out > 0, g.reshape(out.shape), 0.0)  # through relu: [N, F]
    corners = jnp.arange(patches.shape[0], dtype=index.dtype)[:, None, None]
    g_conv = jnp.where(index == corners, g, 0.0)  # to the first maximal corner: [4, N, F]
    g_kernel = jax.lax.dot_general(patches.reshape(-1, 9), g_conv.reshape(-1, filters),
                                   (((0,), (0,)), ((), ())))  # [9, F]
    # The images' gradient (unused in training, where XLA drops it): back through the patches.
    _, patches_vjp = jax.vjp(pooled_patches, images)
    g_images, = patches_vjp(g_conv @ kernel.reshape(9, filters).T)
    return g_images, g_kernel.reshape(kernel.shape), jnp.sum(g, axis=0)


conv3x3_relu_maxpool.defvjp(_conv_block_fwd, _conv_block_bwd)


class CNN(nnx.Module):
    """Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten (rows, columns, filters, as Keras)
    -> DenseStack."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        # Keras' Conv2D kernel layout (3, 3, in, out), glorot over the receptive field.
        self.kernel = nnx.Param(
            nnx.initializers.glorot_uniform()(rngs.params(), (3, 3, 1, CONV_FILTERS)))
        self.bias = nnx.Param(jnp.zeros((CONV_FILTERS,)))
        self.head = DenseStack(CNN_FEATURES, config, rngs)
        self.spatial_dropout_rate = config.spatial_dropout  # 0: no spatial dropout at all

    def __call__(self, images, *, train: bool, key=None, mask=None, dropout=None,
                 spatial_dropout=None):
        x = conv3x3_relu_maxpool(images, self.kernel[...], self.bias[...])
        if train and self.spatial_dropout_rate > 0:
            rate = self.spatial_dropout_rate if spatial_dropout is None else spatial_dropout
            x = spatial_dropout_maps(x, rate, jax.random.fold_in(key, CONV_BLOCK))
        return self.head(x.reshape(x.shape[0], -1), train=train, key=key, mask=mask,
                         dropout=dropout)

    def regularized_kernels(self) -> list[jax.Array]:
        return [self.kernel[...]] + [layer.kernel[...] for layer in self.head.hidden]


def make_model(config: Config, seed=None) -> MLP | CNN:
    """The model for `config`, initialised from the init branch of the key tree of `seed`
    (default config.seed; may be traced, e.g. vmapped over many models' seeds)."""
    return {"mlp": MLP, "cnn": CNN}[config.model](
        config, nnx.Rngs(params=rng.init_key(config.seed if seed is None else seed)))


def state_copies(config: Config) -> int:
    """How many copies of the weights a run's state holds, as a checkpoint stores it: the
    weights, Adam's two moments, the moving average with ema, the best weights with
    restore_best_weights."""
    return 3 + bool(config.ema) + (config.early_stopping and config.restore_best_weights)


def weights_bytes(config: Config) -> int:
    """Bytes of one model's parameters and batch-norm statistics (computed from shapes,
    without allocating them; once per structure, as the models of a sweep share a few)."""
    return _structure_bytes(config.structure())


@functools.lru_cache(maxsize=64)
def _structure_bytes(structure: Config) -> int:
    model = nnx.eval_shape(lambda: make_model(structure))
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model)))


class TrainedModel(NamedTuple):
    """A trained network: its config and the Flax module holding its weights (call
    `module(images, train=False)` for logits of float images in [0, 1])."""

    config: Config
    module: MLP | CNN
