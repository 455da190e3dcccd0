#!/usr/bin/env python3
"""regjax's baseline beside a naive scanned epoch, in one process, epochs alternating.

The naive version is what a JAX user writes first: a Flax linen MLP, optax.adam, the
normalised dataset as float32 in memory, `jax.random.permutation`, the epoch's batches
gathered up front and one `lax.scan` over them, then validation in one call. The ratio
printed here carries regjax's figure over to any host, whatever its speed at the moment
(shared machines drift by tens of percent within minutes, and both loops here share the
drift).

    python benchmarks/naive_scan.py                 # 8 epochs each, alternating
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import device  # benchmarks/common.py
from flax import linen as nn

from regjax import data
from regjax.presets import preset
from regjax.train.engine import Engine


class NaiveMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(128)(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(10)(x)


def naive_epoch_and_validation(train_images, train_labels, val_images, val_labels, batch):
    """(epoch, validate): a jitted scanned epoch and a jitted validation, the naive way."""
    model, optimizer = NaiveMLP(), optax.adam(1e-3, eps=1e-7)
    x_train = train_images.astype(jnp.float32) / 255.0
    x_val = val_images.astype(jnp.float32) / 255.0
    steps = train_labels.shape[0] // batch

    @jax.jit
    def epoch(params, opt_state, key):
        perm = jax.random.permutation(key, train_labels.shape[0])[: steps * batch]
        xs = x_train[perm].reshape(steps, batch, 28, 28)
        ys = train_labels[perm].reshape(steps, batch)

        def step(carry, xy):
            params, opt_state = carry
            x, y = xy

            def loss(p):
                logits = model.apply(p, x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xs, ys))
        return params, opt_state, losses.mean()

    @jax.jit
    def validate(params):
        return jnp.mean(jnp.argmax(model.apply(params, x_val), -1) == val_labels)

    params = model.init(jax.random.key(0), x_train[:1])
    return epoch, validate, params, optimizer.init(params)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8, help="epochs of each (default 8)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch compiles)")
    config = preset("baseline")
    dataset = data.load_dataset(args.dataset, args.data_dir)
    train, val = data.train_and_validation(dataset, config.validation)
    engine = Engine([config], dataset.spec)  # regjax's program for one model, as fit runs it
    (x, y), (vx, vy) = engine.put(train), engine.put(val)
    epoch, validate, params, opt_state = naive_epoch_and_validation(x, y, vx, vy,
                                                                    config.batch_size)
    state = engine.init_state()
    engine.compile(state, (x, y), (vx, vy))
    steps = -(-len(train) // config.batch_size)
    seconds = {"naive": [], "regjax": []}
    for e in range(args.epochs):
        start = time.perf_counter()
        params, opt_state, _ = epoch(params, opt_state, jax.random.key(e))
        jax.block_until_ready(validate(params))
        naive = time.perf_counter() - start
        start = time.perf_counter()
        state, _ = engine.epoch(state, (x, y), e, np.ones(1, bool))
        engine.validate(state, (vx, vy))
        ours = time.perf_counter() - start
        if e:  # the first epoch compiles
            seconds["naive"].append(naive)
            seconds["regjax"].append(ours)
    rate = {k: steps / statistics.median(v) for k, v in seconds.items()}
    print(f"# baseline MLP, batch {config.batch_size}, {dataset.name}, jax {jax.__version__}, "
          f"{device()}; median of {args.epochs - 1} epochs each, validation included")
    print(f"naive scanned epoch {rate['naive']:,.0f} steps/s, regjax {rate['regjax']:,.0f} "
          f"steps/s: {rate['regjax'] / rate['naive']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
