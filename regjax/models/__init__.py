"""The models: the notebook's MLP and CNN (registered by name), or a model of the user's own,
and what regjax needs of any of them (docs/models.md says it for a reader):

- an nnx.Module, built as `make(rngs)` from nnx.Rngs with a `params` stream (drawn from the
  init branch of the seed's key tree) and a `dropout` stream (reseeded every step);
- called as `model(x)` on float images x [B, H, W, C] in [0, 1], returning logits
  [B, classes]; training or evaluation switched by model.train() / model.eval() (flax's
  `deterministic` and `use_running_average` attributes);
- its regularized kernels, which the weight penalties and MaxNorm act on: those its
  `regularized_kernels()` method returns (nnx.Param), or, without one, the kernel of every
  nnx.Linear and nnx.Conv but the last nnx.Linear (the output layer).

A registered model places the layers of the techniques a config turns on (dropout, batch
norm, ...; regjax.techniques) where the techniques ask; a user's model holds its own layers
(flax's, or regjax's, whose values are then knobs).
"""

from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from regjax import rng
from regjax.config import CUSTOM, Config, Knobs
from regjax.data.split import DataSpec
from regjax.models.cnn import CNN
from regjax.models.mlp import MLP
from regjax.models.resnet import ResNet
from regjax.nn import layers

REGISTERED = {"mlp": MLP, "cnn": CNN, "resnet": ResNet}  # config.MODELS


def model_name(maker) -> str:
    return getattr(maker, "__name__", type(maker).__name__)


def make_model(config: Config, spec: DataSpec, seed=None, maker: Callable | None = None):
    """The model for `config` and data of `spec`, initialised from the init branch of the key
    tree of `seed` (default config.seed; may be traced, e.g. vmapped over many models'
    seeds): the registered model config.model names, or, for config.model "custom", the
    user's `maker` (a function rngs -> nnx.Module, or a module class called with rngs=)."""
    key = rng.init_key(config.seed if seed is None else seed)
    if config.model != CUSTOM:
        return REGISTERED[config.model](config, spec, nnx.Rngs(params=key))
    if maker is None:
        raise ValueError("config.model is 'custom': pass the model as model= (a function "
                         "rngs -> nnx.Module, or a module class)")
    rngs = nnx.Rngs(key, params=key, dropout=jax.random.fold_in(key, 1))
    model = maker(rngs=rngs) if inspect.isclass(maker) else maker(rngs)
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model= must build an nnx.Module, but {model_name(maker)} returned "
                        f"{type(model).__name__}")
    return model


def regularized_kernels(model: nnx.Module) -> tuple[tuple, ...]:
    """The paths (in the model's state) of the kernels the weight penalties and MaxNorm act
    on, in the model's order."""
    paths = {id(v): path for path, v in nnx.iter_graph(model) if isinstance(v, nnx.Param)}
    if hasattr(model, "regularized_kernels"):
        return tuple(paths[id(p)] for p in model.regularized_kernels())
    owners = [(path, m) for path, m in nnx.iter_graph(model)
              if isinstance(m, (nnx.Linear, nnx.Conv))]
    last = max((i for i, (_, m) in enumerate(owners) if isinstance(m, nnx.Linear)),
               default=None)
    return tuple((*path, "kernel") for i, (path, _) in enumerate(owners) if i != last)


def check_model(model: nnx.Module, spec: DataSpec, name: str, needs: set[str]) -> None:
    """Refuses, before anything trains, a model whose output is not [B, spec.classes]
    logits for a batch of spec's images, or that lacks the layers of the techniques it is
    to train with (`needs`: their Config fields, from regjax.nn.layers' Knobs)."""
    x = jax.ShapeDtypeStruct((2, *spec.shape), jnp.float32)
    try:
        out = nnx.eval_shape(lambda m, x: m(x), model, x)
    except Exception as e:  # the user's code, on the data's shape
        raise ValueError(f"the model {name} cannot take {spec} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if getattr(out, "shape", None) != (2, spec.classes):
        raise ValueError(f"the model {name} returns {getattr(out, 'shape', type(out))} for a "
                         f"batch of 2 images, not logits (2, {spec.classes}) for "
                         f"{spec.classes} classes")
    missing = sorted(needs - layers.fields_in(model))
    if missing:
        raise ValueError(f"the model {name} holds no layer for {', '.join(missing)}: add the "
                         f"technique's layer to it (regjax.techniques.{missing[0]}: its knob "
                         "is then set from the config), or train without it")


class TrainedModel(NamedTuple):
    """A trained network: its config, the Flax module holding its weights and the data it
    was built for. Call it on float images [B, H, W, C] in [0, 1] for logits: in evaluation
    mode, or with train=True (and a `key` for its dropout layers) in training mode, its
    layers using the config's real rates."""

    config: Config
    module: nnx.Module
    spec: DataSpec

    def __call__(self, images, *, train: bool = False, key=None) -> jax.Array:
        layers.prepare(self.module, train=train, knobs=Knobs.of(self.config), key=key)
        return self.module(jnp.asarray(images, jnp.float32))

