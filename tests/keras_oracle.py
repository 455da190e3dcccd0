"""Keras as the test oracle: the Keras model equivalent to a regjax Config, with a model's
weights carried over from regjax's named arrays (the names model.npz uses).

Keras runs on its JAX backend here (no TensorFlow needed; conftest.py selects it before
Keras is first imported). The notebook runs on TensorFlow, where Keras computes the
cross-entropy of a softmax output from its logits; Keras' JAX backend instead clips the
probabilities to [1e-7, 1 - 1e-7]. So the oracle model ends in logits and its loss is the
notebook's loss with `from_logits=True`: the arithmetic the notebook does on TensorFlow.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from regjax.config import Config
from regjax.techniques import active

IMAGE_SHAPE, NUM_CLASSES = (28, 28), 10  # the notebook's data

assert keras.backend.backend() == "jax", "conftest.py sets KERAS_BACKEND=jax"


def regularizer(config: Config):
    """The notebook's kernel_regularizer for `config`'s penalties (None without any); the
    orthogonal regularizer alone (Keras takes one kernel_regularizer)."""
    if config.orthogonal:
        assert not (config.l1 or config.l2), "one kernel regularizer in the oracle"
        return keras.regularizers.OrthogonalRegularizer(config.orthogonal, mode="rows")
    if config.l1 and config.l2:
        return keras.regularizers.L1L2(l1=config.l1, l2=config.l2)
    if config.l1:
        return keras.regularizers.l1(config.l1)
    return keras.regularizers.l2(config.l2) if config.l2 else None


def notebook_loss(smoothing: float):
    """The notebook's loss (its custom_loss when smoothing > 0) on one-hot targets, from
    logits."""
    def loss(y_true, logits):
        y_smooth = y_true * (1 - smoothing) + smoothing / NUM_CLASSES
        return keras.losses.categorical_crossentropy(y_smooth, logits, from_logits=True)
    return loss


def keras_model(config: Config) -> keras.Sequential:
    """The notebook's Keras model for `config` (Dense+ReLU, then BatchNormalization and
    Dropout where the config has them; the CNN's Conv2D and MaxPooling2D first), ending in
    logits, compiled with Adam (Keras' defaults; AdamW with the config's weight decay) and
    the notebook's loss, with accuracy; MaxNorm on the hidden kernels, an L2 activity
    regularizer on their outputs and the orthogonal regularizer on their kernels where the
    config has them."""
    layers, reg = keras.layers, regularizer(config)
    if config.model == "cnn":
        # regjax penalises the convolution's kernel too when a penalty is set.
        stack = [keras.Input((*IMAGE_SHAPE, 1)),
                 layers.Conv2D(32, (3, 3), activation="relu", kernel_regularizer=reg),
                 layers.MaxPooling2D((2, 2))]
        if config.spatial_dropout:
            stack.append(layers.SpatialDropout2D(config.spatial_dropout))
        stack.append(layers.Flatten())
    else:
        stack = [keras.Input((IMAGE_SHAPE[0] * IMAGE_SHAPE[1],))]
    if config.gaussian_noise:
        stack.insert(1, layers.GaussianNoise(config.gaussian_noise))
    constraint = keras.constraints.MaxNorm(config.max_norm, axis=0) if config.max_norm else None
    activity = keras.regularizers.L2(config.activity_l2) if config.activity_l2 else None
    for units in config.hidden:
        stack.append(layers.Dense(units, activation="relu", kernel_regularizer=reg,
                                  kernel_constraint=constraint,
                                  activity_regularizer=activity))
        if config.batchnorm:
            stack.append(layers.BatchNormalization())
        if config.dropout:
            stack.append(layers.Dropout(config.dropout))
        if config.gaussian_dropout:
            stack.append(layers.GaussianDropout(config.gaussian_dropout))
    stack.append(layers.Dense(NUM_CLASSES))
    model = keras.Sequential(stack)
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay,
                                       **ema) \
        if config.weight_decay else keras.optimizers.Adam(config.learning_rate, **ema)
    model.compile(optimizer=optimizer,
                  loss=notebook_loss(config.label_smoothing), metrics=["categorical_accuracy"])
    return model


def keras_order(config: Config) -> list[str]:
    """regjax's names of the arrays of keras_model(config).get_weights(), in its order."""
    order = ["params/kernel", "params/bias"] if config.model == "cnn" else []
    for i in range(len(config.hidden)):
        order += [f"params/head/hidden/{i}/kernel", f"params/head/hidden/{i}/bias"]
        if config.batchnorm:  # gamma, beta, moving mean, moving variance
            norm = f"head/after/{i}/{hidden_layers(config).index('batchnorm')}/norm"
            order += [f"params/{norm}/scale", f"params/{norm}/bias",
                      f"batch_stats/{norm}/mean", f"batch_stats/{norm}/var"]
    return order + ["params/head/output/kernel", "params/head/output/bias"]


def hidden_layers(config: Config) -> list[str]:
    """The techniques whose layers regjax's DenseStack places after each hidden layer, in
    its order."""
    return [t.name for t in active(config) if "hidden" in t.layers]


def keras_weights(arrays: dict[str, np.ndarray], config: Config) -> list[np.ndarray]:
    """regjax's named arrays (regjax.files.modelfile.named_arrays, or a model.npz) in the order of
    keras_model(config).get_weights(). Both frameworks keep Dense kernels as [in, out] and
    the convolution's as [3, 3, in, out]."""
    return [np.asarray(arrays[name]) for name in keras_order(config)]


def keras_inputs(images: np.ndarray, config: Config) -> np.ndarray:
    """uint8 images as the notebook feeds them: /255 as float32, flattened for the MLP,
    with a channel axis for the CNN."""
    x = images.astype(np.float32) / 255.0
    if config.model == "cnn":
        return x if x.ndim == 4 else x[..., None]
    return x.reshape(len(x), -1)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


@functools.lru_cache(maxsize=1)
def weight_holder() -> keras.Sequential:
    """A Keras model whose only weight keras_stop_epoch sets to the epoch (built once)."""
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])


def keras_stop_epoch(values, patience, min_delta=0.0, restore_best_weights=False):
    """keras.callbacks.EarlyStopping(monitor='val_loss') driven epoch by epoch with `values`
    as val_loss: returns (0-based epoch at which it stops training or None, the 0-based
    epoch whose weights it leaves in the model). The model's only weight is the epoch."""
    model = weight_holder()
    callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                             min_delta=min_delta,
                                             restore_best_weights=restore_best_weights)
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    stopped = None
    for epoch, value in enumerate(values):
        model.set_weights([np.full((1, 1), epoch, np.float32)])
        callback.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end()
    return stopped, int(model.get_weights()[0][0, 0])
