"""The notebook's models as Flax NNX modules, initialised as Keras does (glorot_uniform
kernels, zero biases) so results are comparable with the original."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from regjax.config import Config
from regjax.data import IMAGE_SHAPE, NUM_CLASSES

# Keras BatchNormalization defaults (flax's epsilon is 1e-5).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
CONV_FILTERS = 32


def dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=nnx.initializers.glorot_uniform(),
                      bias_init=nnx.initializers.zeros_init(), rngs=rngs)


class DenseStack(nnx.Module):
    """Hidden Dense+ReLU layers, each optionally followed by BatchNorm and Dropout, then the
    output Dense layer producing logits (softmax lives in the loss)."""

    def __init__(self, in_features: int, config: Config, rngs: nnx.Rngs):
        sizes = (in_features, *config.hidden)
        self.hidden = nnx.List([dense(i, o, rngs) for i, o in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List(
            [nnx.BatchNorm(o, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
             for o in config.hidden] if config.batchnorm else [])
        self.dropout = nnx.Dropout(config.dropout)
        self.output = dense(sizes[-1], NUM_CLASSES, rngs)

    def __call__(self, x, *, train: bool, key=None, mask=None):
        return self.output(self.features(x, train=train, key=key, mask=mask))

    def features(self, x, *, train: bool, key=None, mask=None):
        """The last hidden layer's activations, after batch norm and dropout."""
        for i, layer in enumerate(self.hidden):
            x = nnx.relu(layer(x))
            if self.norms:
                # Padded rows of a partial batch must not enter the batch statistics.
                x = self.norms[i](x, use_running_average=not train,
                                  mask=None if mask is None else mask[:, None])
            if train and self.dropout.rate > 0:
                x = self.dropout(x, deterministic=False, rngs=jax.random.fold_in(key, i))
        return x


class MLP(nnx.Module):
    """Flatten -> DenseStack: the notebook's Dense(128)-Dense(64)-Dense(10)."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        self.head = DenseStack(IMAGE_SHAPE[0] * IMAGE_SHAPE[1], config, rngs)

    def __call__(self, images, *, train: bool, key=None, mask=None):
        return self.head(images.reshape(images.shape[0], -1), train=train, key=key, mask=mask)

    def regularized_kernels(self) -> list[jax.Array]:
        return [layer.kernel[...] for layer in self.head.hidden]


def conv3x3(images: jax.Array, kernel: jax.Array) -> jax.Array:
    """'valid' 3x3 convolution of [B, H, W, C] as patches times a matrix.

    On CPU this is several times faster than lax.conv for the kernel gradient, which is
    one large matmul here instead of a small-channel convolution."""
    h, w = images.shape[1] - 2, images.shape[2] - 2
    patches = jnp.concatenate(
        [images[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, 'valid' (as Keras), over [B, H, W, C].

    The gradient goes to the first maximum of each window in row-major order, as in
    TensorFlow, so tied inputs (a blank image region) do not multiply it. Written as
    elementwise selects with the winner's index saved: on CPU, reduce_window's
    select-and-scatter gradient, or a reduce-max gradient that counts ties, costs several
    times more than the rest of the layer."""
    return _max_pool_fwd(x)[0]


def _max_pool_fwd(x):
    b, h, w, c = x.shape
    x = x[:, :h - h % 2, :w - w % 2, :].reshape(b, h // 2, 2, w // 2, 2, c)
    corners = [x[:, :, i, :, j, :] for i in (0, 1) for j in (0, 1)]
    best, index = corners[0], jnp.zeros(corners[0].shape, jnp.int8)
    for k, corner in enumerate(corners[1:], start=1):
        better = corner > best  # strict: ties keep the earlier position
        best = jnp.where(better, corner, best)
        index = jnp.where(better, jnp.int8(k), index)
    return best, (index, x.shape, (h, w))


def _max_pool_bwd(residuals, g):
    index, shape6, (h, w) = residuals
    position = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)
    grad = jnp.where(index[:, :, None, :, None, :] == position, g[:, :, None, :, None, :], 0)
    b, h2, _, w2, _, c = shape6
    grad = grad.reshape(b, 2 * h2, 2 * w2, c)
    return (jnp.pad(grad, ((0, 0), (0, h - 2 * h2), (0, w - 2 * w2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class CNN(nnx.Module):
    """Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> DenseStack."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        # Keras' Conv2D kernel layout (3, 3, in, out), glorot over the receptive field.
        self.kernel = nnx.Param(
            nnx.initializers.glorot_uniform()(rngs.params(), (3, 3, 1, CONV_FILTERS)))
        self.bias = nnx.Param(jnp.zeros((CONV_FILTERS,)))
        pooled = ((IMAGE_SHAPE[0] - 2) // 2) * ((IMAGE_SHAPE[1] - 2) // 2) * CONV_FILTERS
        self.head = DenseStack(pooled, config, rngs)

    def __call__(self, images, *, train: bool, key=None, mask=None):
        x = nnx.relu(conv3x3(images[..., None], self.kernel[...]) + self.bias[...])
        x = max_pool_2x2(x)
        return self.head(x.reshape(x.shape[0], -1), train=train, key=key, mask=mask)

    def regularized_kernels(self) -> list[jax.Array]:
        return [self.kernel[...]] + [layer.kernel[...] for layer in self.head.hidden]


def make_model(config: Config, seed: int | None = None) -> MLP | CNN:
    """The model for `config`, initialised from `seed` (default: config.seed)."""
    rngs = nnx.Rngs(params=config.seed if seed is None else seed)
    return {"mlp": MLP, "cnn": CNN}[config.model](config, rngs)
