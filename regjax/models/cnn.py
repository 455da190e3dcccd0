"""The notebook's CNN: Conv2D(32, 3x3, relu) -> MaxPooling2D 2x2 -> (the layers the active
techniques place on the feature maps: spatial dropout) -> Flatten (rows, columns, filters,
as Keras) -> the MLP's DenseStack; for images of any size and number of channels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from regjax.data.split import DataSpec
from regjax.models.mlp import DenseStack
from regjax.techniques import slot_layers

FILTERS = 32
# The position of a layer on the feature maps, for its key (hidden layers take 0, 1, ...).
MAPS = 2**16


def pooled_patches(images: jax.Array) -> jax.Array:
    """The 3x3 patches under each 2x2 pooling window of [B, H, W, C] images, as
    [4 window corners, B*H'*W' windows, 9*C taps] (H' = (H - 2) // 2, rows then columns;
    taps in the order of a [3, 3, C] kernel): corner (di, dj) of window (i, j) is the
    convolution output at (2i + di, 2j + dj), whose tap (ki, kj, c) reads pixel
    (2i + di + ki, 2j + dj + kj) of channel c. One gather of each image's pixels at a
    constant index table, which XLA compiles to a single loop."""
    b, h, w, c = images.shape
    ph, pw = (h - 2) // 2, (w - 2) // 2
    i, j = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
    index = np.stack([np.stack([(2 * i + di + ki) * w + 2 * j + dj + kj
                                for ki in range(3) for kj in range(3)], axis=-1).reshape(-1, 9)
                      for di in (0, 1) for dj in (0, 1)])  # [4, H'*W', 9]
    # One channel gathers from [B, H*W]: the one-channel program stays that of a 2-D gather.
    pixels = images.reshape(b, h * w) if c == 1 else images.reshape(b, h * w, c)
    patches = jnp.take(pixels, jnp.asarray(index, jnp.int32), axis=1)  # [B, 4, H'W', 9(, C)]
    return jnp.moveaxis(patches, 1, 0).reshape(4, b * ph * pw, 9 * c)


@jax.custom_vjp
def conv3x3_relu_maxpool(images: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """relu(Conv2D 3x3 'valid' + bias) followed by MaxPooling2D 2x2 (stride 2, 'valid') on
    [B, H, W, C] images, as Keras computes it; returns [B, H', W', F].

    The convolution is one product, patches [4 corners, windows, 9*C] @ kernel [9*C, F], and
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
    b, h, w, _ = images.shape
    taps, filters = np.prod(kernel.shape[:3]), kernel.shape[-1]
    patches = pooled_patches(images)  # [4, N, 9*C]
    best, index = _first_max(patches @ kernel.reshape(taps, filters))  # [N, F]
    out = nnx.relu(best + bias)
    return out.reshape(b, (h - 2) // 2, (w - 2) // 2, filters), (images, kernel, patches, index,
                                                                 out)


def _conv_block_bwd(residuals, g):
    images, kernel, patches, index, out = residuals
    taps, filters = np.prod(kernel.shape[:3]), kernel.shape[-1]
    g = jnp.where(out > 0, g.reshape(out.shape), 0.0)  # through relu: [N, F]
    corners = jnp.arange(patches.shape[0], dtype=index.dtype)[:, None, None]
    g_conv = jnp.where(index == corners, g, 0.0)  # to the first maximal corner: [4, N, F]
    g_kernel = jax.lax.dot_general(patches.reshape(-1, taps), g_conv.reshape(-1, filters),
                                   (((0,), (0,)), ((), ())))  # [9*C, F]
    # The images' gradient (unused in training, where XLA drops it): back through the patches.
    _, patches_vjp = jax.vjp(pooled_patches, images)
    g_images, = patches_vjp(g_conv @ kernel.reshape(taps, filters).T)
    return g_images, g_kernel.reshape(kernel.shape), jnp.sum(g, axis=0)


conv3x3_relu_maxpool.defvjp(_conv_block_fwd, _conv_block_bwd)


class CNN(nnx.Module):
    """Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> the "maps" slot's layers -> Flatten (rows,
    columns, filters, as Keras) -> DenseStack."""

    def __init__(self, config, spec: DataSpec, rngs: nnx.Rngs):
        height, width, channels = spec.shape
        if height < 4 or width < 4:
            raise ValueError(f"the cnn needs images of at least 4x4 pixels, got "
                             f"{height}x{width}")
        # Keras' Conv2D kernel layout (3, 3, in, out), glorot over the receptive field.
        self.kernel = nnx.Param(
            nnx.initializers.glorot_uniform()(rngs.params(), (3, 3, channels, FILTERS)))
        self.bias = nnx.Param(jnp.zeros((FILTERS,)))
        features = ((height - 2) // 2) * ((width - 2) // 2) * FILTERS
        self.head = DenseStack(features, config, spec.classes, rngs)
        self.maps = nnx.List([make(config, FILTERS, MAPS, rngs)
                              for make in slot_layers(config, "maps")])

    def __call__(self, images: jax.Array) -> jax.Array:
        x = conv3x3_relu_maxpool(images, self.kernel[...], self.bias[...])
        for layer in self.maps:
            x = layer(x)
        return self.head(x.reshape(x.shape[0], -1))

    def regularized_kernels(self) -> list[nnx.Param]:
        """What the weight penalties act on: the convolution's kernel and the hidden Dense
        kernels (MaxNorm: the Dense ones)."""
        return [self.kernel] + [layer.kernel for layer in self.head.hidden]
