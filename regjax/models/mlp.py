"""The notebook's MLP: Flatten -> hidden Dense+ReLU layers (each followed by the layers the
active techniques place after it: batch norm, dropout, ...) -> Dense output (logits),
initialised as Keras does (glorot_uniform kernels, zero biases)."""

from __future__ import annotations

import math

import jax
from flax import nnx

from regjax.data.split import DataSpec
from regjax.techniques import slot_layers


def dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=nnx.initializers.glorot_uniform(),
                      bias_init=nnx.initializers.zeros_init(), rngs=rngs)


class DenseStack(nnx.Module):
    """Hidden Dense+ReLU layers, after each the active techniques' layers of the "hidden"
    slot (a layer at hidden layer i draws at position i), then the output Dense layer
    producing logits (softmax lives in the loss)."""

    def __init__(self, in_features: int, config, classes: int, rngs: nnx.Rngs):
        sizes = (in_features, *config.hidden)
        self.hidden = nnx.List([dense(i, o, rngs) for i, o in zip(sizes[:-1], sizes[1:])])
        self.after = nnx.List([nnx.List([make(config, o, position, rngs)
                                         for make in slot_layers(config, "hidden")])
                               for position, o in enumerate(config.hidden)])
        self.output = dense(sizes[-1], classes, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output(self.features(x))

    def features(self, x: jax.Array) -> jax.Array:
        """The last hidden layer's activations, after the layers that follow it."""
        for layer, after in zip(self.hidden, self.after):
            x = nnx.relu(layer(x))
            for extra in after:
                x = extra(x)
        return x


class MLP(nnx.Module):
    """Flatten -> DenseStack: the notebook's Dense(128)-Dense(64)-Dense(10)."""

    def __init__(self, config, spec: DataSpec, rngs: nnx.Rngs):
        self.head = DenseStack(math.prod(spec.shape), config, spec.classes, rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(images.reshape(images.shape[0], -1))

    def regularized_kernels(self) -> list[nnx.Param]:
        """What the weight penalties and MaxNorm act on: the hidden Dense kernels."""
        return [layer.kernel for layer in self.head.hidden]
