"""A small residual CNN, He et al.'s CIFAR ResNet narrowed: Conv2D(16, 3x3) -> BN -> ReLU,
three stages of two basic blocks (16, 32 and 64 filters; the second and third stages halve
the image with a stride of 2), global average pooling, Dense to the classes (logits).

A basic block: Conv 3x3 -> BN -> ReLU -> Conv 3x3 -> BN, then the layers the active
techniques place on this residual branch (stochastic depth), plus the shortcut (the input
itself, or a 1x1 Conv with the stride and BN where the shape changes), then ReLU. The
convolutions have no bias (batch norm follows) and 'same' padding, initialised as Keras'
Conv2D (glorot_uniform), each computed as one matrix product (Conv); batch norm is
keras.layers.BatchNormalization's, the padding rows of a partial batch left out of its
statistics. The whole network is checked against the
same one built in Keras from the same weights (tests/test_resnet.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from regjax.data.split import DataSpec
from regjax.techniques import slot_layers
from regjax.techniques.batchnorm import BatchNorm

STAGES = (16, 32, 64)  # filters per stage
BLOCKS = 2  # basic blocks per stage


def shifted_patches(x: jax.Array, size: int, stride: int) -> jax.Array:
    """The size x size patches of [B, H, W, C] under 'same' padding (TensorFlow's: the odd
    pixel of padding after), as [B, H', W', size * size * C] in the order of a [size, size,
    C] kernel: strided slices of the padded image, one per tap."""
    _, h, w, _ = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + size - h, 0)
    pad_w = max((out_w - 1) * stride + size - w, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                    (0, 0)))
    return jnp.concatenate([x[:, i:i + (out_h - 1) * stride + 1:stride,
                              j:j + (out_w - 1) * stride + 1:stride, :]
                            for i in range(size) for j in range(size)], axis=-1)


class Conv(nnx.Module):
    """Keras' Conv2D(cout, size, strides=stride, padding="same", use_bias=False): its
    kernel [size, size, cin, cout] (glorot_uniform), computed as one matrix product of the
    shifted patches. (XLA's CPU convolution inside the training loop's lax.scan ran about
    30x slower than outside it, measured: 9 s against 0.3 s for a step; a product does not.)"""

    def __init__(self, cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs):
        self.kernel = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (size, size, cin, cout)))
        self.size, self.stride = size, stride

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        patches = shifted_patches(x, self.size, self.stride)
        return patches @ kernel.reshape(-1, kernel.shape[-1])


class Block(nnx.Module):
    """A basic block; `depth` (0 for the first block, 1 for the last) and `position` (its
    index) for the layers of the "residual" slot."""

    def __init__(self, cin: int, cout: int, stride: int, config, depth: float, position: int,
                 rngs: nnx.Rngs):
        self.conv1, self.norm1 = Conv(cin, cout, 3, stride, rngs), BatchNorm(cout, rngs=rngs)
        self.conv2, self.norm2 = Conv(cout, cout, 3, 1, rngs), BatchNorm(cout, rngs=rngs)
        self.branch = nnx.List([make(config, depth, position, rngs)
                                for make in slot_layers(config, "residual")])
        changes = stride != 1 or cin != cout
        self.shortcut = nnx.List([Conv(cin, cout, 1, stride, rngs), BatchNorm(cout, rngs=rngs)]
                                 if changes else [])

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.norm2(self.conv2(nnx.relu(self.norm1(self.conv1(x)))))
        for layer in self.branch:
            y = layer(y)
        for layer in self.shortcut:
            x = layer(x)
        return nnx.relu(x + y)


class ResNet(nnx.Module):
    def __init__(self, config, spec: DataSpec, rngs: nnx.Rngs):
        channels = spec.shape[2]
        self.stem, self.norm = Conv(channels, STAGES[0], 3, 1, rngs), BatchNorm(STAGES[0],
                                                                              rngs=rngs)
        count, blocks, cin = len(STAGES) * BLOCKS, [], STAGES[0]
        for stage, cout in enumerate(STAGES):
            for b in range(BLOCKS):
                i = len(blocks)
                blocks.append(Block(cin, cout, 2 if stage and not b else 1, config,
                                    i / (count - 1), i, rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.output = nnx.Linear(cin, spec.classes, kernel_init=nnx.initializers.glorot_uniform(),
                                 bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = nnx.relu(self.norm(self.stem(images)))
        for block in self.blocks:
            x = block(x)
        return self.output(jnp.mean(x, axis=(1, 2)))

    def regularized_kernels(self) -> list[nnx.Param]:
        """What the weight penalties act on: every convolution's kernel (MaxNorm and the
        orthogonal penalty, which act on Dense kernels, find none)."""
        return [m.kernel for _, m in nnx.iter_modules(self) if isinstance(m, Conv)]
