"""What regjax's layers hold besides their weights, and how a step hands it to them before
calling a model. A layer that a technique adds (a dropout, a batch norm, ...) is an
nnx.Module written as flax's own layers are: training or evaluation through its
`deterministic` / `use_running_average` attribute (model.train(), model.eval()), and
three kinds of variable that the step sets before every call (`prepare`):

    Knob      the technique's value (a dropout rate): set from the model's knobs, so one
              program trains models with different values, and a model keeps its real
              value (TrainedModel sets it from its config)
    LayerKey  the key the layer draws from in this step: fold_in(the step's layer key,
              its position), a position the model gives each layer it places
    RowMask   which rows of the batch are real (1) and which are the padding of a partial
              batch (0), for a batch norm's statistics

and one kind the layer sets when called: ExampleLoss, a loss term per example of the batch
(an activity penalty, Keras' activity_regularizer), which the step adds to each example's
loss in training and evaluation (`prepare` zeroes it before every call).

A layer's position is its place in the model (hidden layer i: i; the CNN's feature maps:
their own number) plus, for a technique that may sit beside dropout at one place, an
offset of its own (`STREAM`), so that no two layers draw from one key.

A user's model may hold these layers too (their values then sweepable knobs), beside flax's
own nnx.Dropout, whose `dropout` stream the step reseeds from the same key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from regjax import rng


class Knob(nnx.Variable):
    """A technique's value inside a layer; `field` names its Config field."""


class LayerKey(nnx.Variable):
    """The key a layer draws from, as its raw threefry data (uint32[2], which files can
    hold): `position` derives it from the step's layer key; `drawing_key` wraps it."""


class RowMask(nnx.Variable):
    """1 for the batch's real rows, 0 for padding, set before every training call."""


class ExampleLoss(nnx.Variable):
    """A loss term per example ([B]) that a layer sets when called; 0 before the call."""


def knob(value, field: str) -> Knob:
    return Knob(jnp.asarray(value, jnp.float32), field=field)


def layer_key(position: int) -> LayerKey:
    """A layer's key variable; until a step sets it, the key of `position` under seed 0."""
    return LayerKey(jax.random.key_data(jax.random.fold_in(rng.root_key(0), position)),
                    position=position)


def drawing_key(variable: LayerKey) -> jax.Array:
    return jax.random.wrap_key_data(variable[...], impl="threefry2x32")


def row_mask() -> RowMask:
    return RowMask(jnp.ones((1,), bool))


def example_loss() -> ExampleLoss:
    return ExampleLoss(jnp.zeros((), jnp.float32))


def example_losses(model: nnx.Module) -> jax.Array:
    """The sum of the loss terms per example that the model's layers set in its last call
    (a scalar 0 where none did)."""
    terms = [v[...] for _, v in nnx.iter_graph(model) if isinstance(v, ExampleLoss)]
    return sum(terms, jnp.zeros((), jnp.float32))


class TrainingNoise(nnx.Module):
    """A layer that draws in training and is the identity in evaluation (dropout and its
    kin): its rate a Knob of the Config field `field` (default: the class's FIELD), its
    draws from the LayerKey of `position`. A subclass sets FIELD and `draw(x, rate, key)`."""

    FIELD: str

    def __init__(self, rate: float, *, position: int = 0, field: str | None = None):
        self.rate = knob(rate, field or self.FIELD)
        self.key = layer_key(position)
        self.deterministic = False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic:
            return x
        return self.draw(x, self.rate[...], drawing_key(self.key))


# Where a user model's own nnx.Dropout streams branch from the step's layer key.
FLAX_STREAMS = 2**20


def prepare(model: nnx.Module, *, train: bool, knobs=None, key=None, rows=None) -> None:
    """Makes `model` (a copy merged inside a step) ready for one call: training or
    evaluation mode, every Knob set from `knobs` (a regjax.config Knobs, or None to keep
    the values it holds), every LayerKey from `key` (the step's layer key) and every RowMask
    from `rows` (the batch's row weights); flax's own dropout streams reseeded from `key`."""
    if train:
        model.train()
    else:
        model.eval()
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, Knob) and knobs is not None:
            variable.set_value(jnp.asarray(getattr(knobs, variable.field), jnp.float32))
        elif isinstance(variable, LayerKey) and key is not None:
            variable.set_value(jax.random.key_data(jax.random.fold_in(key, variable.position)))
        elif isinstance(variable, RowMask) and rows is not None:
            variable.set_value(rows > 0)
        elif isinstance(variable, ExampleLoss):
            variable.set_value(jnp.zeros((), jnp.float32))
    if key is not None:
        nnx.reseed(model, dropout=jax.random.fold_in(key, FLAX_STREAMS))


def fields_in(model: nnx.Module) -> set[str]:
    """The Config fields whose Knobs the model holds (the techniques it places layers of)."""
    return {v.field for _, v in nnx.iter_graph(model) if isinstance(v, Knob)}
