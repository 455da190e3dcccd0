"""What a technique is: one regularizer, declared in one module of regjax.techniques with
everything the rest of regjax needs to know about it. Its Config fields (with their help,
range, flag group and how they may vary between models), its presets, the branch of a
step's key it draws from, and the places where it acts, in Keras' order:

    inputs     an input transform of the training batch: affine augmentation, random
               erasing, MixUp, CutMix, Gaussian noise
    layers     a layer the models place: dropout, batch norm, spatial dropout, Gaussian
               dropout, an activity penalty (a layer may add a loss term per example)
    penalty    a loss term of the model's regularized kernels: L1, L2, orthogonality
    targets    a change of the training targets: label smoothing
    gradient   an optax GradientTransformation chained before Keras' Adam, on the
               gradient: gradient noise, SAM's gradient at the ascent point
    update     an optax GradientTransformation chained after Keras' Adam: AdamW's decay,
               the weights' moving average
    project    a projection of the weights after each update: MaxNorm
    host       a rule the host loop applies between epochs: early stopping

The compiled step composes the hooks of the techniques a program has on (its structure),
in Keras' order; it names none of them. A technique's value always comes in as a knob (the
program's `Knobs`: one value per model), and every hook must be exact identity where that
value is its "off" value (0): models of one program may have it on and off.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

# The places, in the order a step runs them; a technique's `order` sorts it within its place.
PLACES = ("inputs", "layers", "penalty", "targets", "gradient", "update", "project", "host")
# The notebook's CNN, which the CNN presets start from: Conv2D(32, 3x3), MaxPool, Dense(128),
# validated on the test split.
NOTEBOOK_CNN = dict(model="cnn", hidden=(128,), validation="test")


class Preset(NamedTuple):
    """A named set-up: the baseline's Config with `settings` changed."""

    settings: dict
    summary: str  # one line, for --help and the README
    part: int  # 1: the notebook's techniques; 2: the ones a reader meets next; 3: after those
    rank: float  # its place among its part's presets (the notebook's order)


@dataclasses.dataclass(frozen=True)
class Technique:
    """One regularizer. `fields`: its Config fields by name (regjax.fields.setting); the
    first is its switch unless `switch` names another (on where its value is true or
    non-zero). The hooks (None where it does not act there):

    inputs(key, x, weights, knobs, mix) -> (x, mix)
        x: the float training batch [B, H, W, C]; weights [B]: 1 for a real row, 0 for the
        padding of a partial batch; mix: (partner rows, weights) where a mixing technique
        has mixed the batch (the targets are mixed alike), else None.
    layers: {slot: factory(features, position) -> nnx.Module}
        a layer for a registered model to place in `slot` ("hidden": after each hidden
        Dense and its ReLU, `features` units; "maps": after the convolution block, its
        feature maps; "residual": on a residual block's branch before the sum, `features`
        the block's depth, 0 for the first block to 1 for the last; config.MODELS lists
        each model's slots), from regjax.nn.layers' variables (its knob as a Knob, its key as a
        LayerKey drawn at `position`; a loss term per example as an ExampleLoss).
    penalty(kernels, knobs) -> scalar: added to the loss; kernels: the model's regularized
        kernels (regjax.models.regularized_kernels).
    targets(targets, knobs) -> targets: the training and validation targets [B, classes].
    gradient(knobs) -> optax.GradientTransformation: chained before Keras' Adam; one that
        supports extra arguments (optax.GradientTransformationExtraArgs) receives `key`
        (the step's key: it draws from regjax.rng.technique_key(key, its branch)) and
        `loss_gradient` (params -> the loss's gradient at those weights on the step's
        batch, with the step's draws; the batch statistics are not updated by it).
    update(knobs) -> optax.GradientTransformation: chained after Keras' Adam.
    project(params, kernels, knobs) -> params: after each update; kernels: the paths of the
        regularized kernels in params.
    host(config) -> a rule with update(epoch, val_loss) -> (improved, stop), applied
        between epochs by the host loop.
    final(state of its update transformation) -> the weights the model ends with (the
        moving average replacing them, say), or None.

    `branch`: the number of its branch of a step's key (regjax.rng.technique_key), where it
    draws; techniques that exclude each other may share one. `models`: the registered
    models it can act in (None: any), `acts_on` saying why. `excludes`: {technique: why}
    of the techniques it cannot be combined with."""

    name: str
    fields: dict[str, dataclasses.Field]
    presets: dict[str, Preset] = dataclasses.field(default_factory=dict)
    place: str = "inputs"
    order: float = 0.0
    switch: str | None = None
    branch: int | None = None
    models: tuple[str, ...] | None = None
    acts_on: str = ""
    excludes: dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: Callable | None = None
    layers: dict[str, Callable] = dataclasses.field(default_factory=dict)
    penalty: Callable | None = None
    targets: Callable | None = None
    gradient: Callable | None = None
    update: Callable | None = None
    project: Callable | None = None
    host: Callable | None = None
    final: Callable | None = None

    def __post_init__(self):
        if self.place not in PLACES:
            raise ValueError(f"technique {self.name}: place must be one of {PLACES}")
        if self.switch is None:
            object.__setattr__(self, "switch", next(iter(self.fields)))

    def on(self, config: Any) -> bool:
        """Whether `config` (a Config, or a program's structure) has this technique on."""
        return bool(getattr(config, self.switch))
