"""The same workloads in regjax and in its peers, each run inside one worker process:
the notebook's own Keras code (Keras 3, on TensorFlow or on JAX) and an idiomatic PyTorch
version. Every runner trains one technique on the same arrays with the notebook's settings
and returns per-epoch wall times (training plus validation), the test accuracy and the
epochs run. Used by compare_frameworks.py and parity.py; not imported by regjax. (Over 250
lines on purpose: the three peers' runners side by side, so that their settings can be
read against each other.)"""

from __future__ import annotations

import time

import numpy as np

from regjax import data, presets

TECHNIQUES = presets.TECHNIQUES


def arrays(technique: str, dataset: data.Dataset):
    """(x_train, y_train, x_val, y_val, x_test, y_test) as the notebook sets them up: float
    images in [0, 1], integer labels; the validation part as regjax splits it (the last
    20%, which is also what Keras' validation_split takes)."""
    config = presets.preset(technique)
    train, val = data.train_and_validation(dataset, config.validation)
    f = lambda s: s.images.astype(np.float32) / 255.0  # noqa: E731
    return f(train), train.labels, f(val), val.labels, f(dataset.test), dataset.test.labels


# ------------------------------------------------------------------------------ regjax

def run_regjax(technique: str, dataset: data.Dataset, epochs: int | None, seed: int) -> dict:
    from regjax.train.fit import fit

    overrides = {"seed": seed} if epochs is None else {"seed": seed, "epochs": epochs}
    config = presets.preset(technique, **overrides)
    train, val = data.train_and_validation(dataset, config.validation)
    history, _ = fit(config, train, val, dataset.test, log=lambda _: None)
    return {"epoch_seconds": history["epoch_seconds"], "steps_per_epoch":
            history["steps_per_epoch"], "first_call_seconds": history["compile_seconds"],
            "test_accuracy": history["test_accuracy"], "epochs_run": history["epochs_run"]}


# ------------------------------------------------------------------------------- Keras

def keras_model(technique: str):
    """The notebook's model for `technique`, compiled as the notebook compiles it; for the
    Part 2 techniques, the notebook's baseline with the Keras 3 feature that implements it
    (AdamW with its default weight decay; MaxNorm(3) as the hidden kernels' constraint;
    GaussianNoise(0.1) on the inputs; SpatialDropout2D(0.2) on the CNN's pooled maps; Adam
    with use_ema=True; MixUp, CutMix and RandomErasing act on the batches: batch_transform);
    for Part 3's, GaussianDropout(0.25) where Dropout would be, an L2(1e-4)
    activity_regularizer and OrthogonalRegularizer(0.01, "rows") on the hidden Dense layers
    (SAM and gradient noise have no Keras form: the baseline's model)."""
    import keras
    from keras import layers, regularizers

    if technique in ("augmentation", "spatial_dropout"):
        maps = [layers.SpatialDropout2D(0.2)] if technique == "spatial_dropout" else []
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)), *maps,
            layers.Flatten(), layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    reg = {"l1": regularizers.l1(0.001), "l2": regularizers.l2(0.001),
           "orthogonal": regularizers.OrthogonalRegularizer(0.01, mode="rows")}.get(technique)
    activity = regularizers.L2(1e-4) if technique == "activity_l2" else None
    constraint = keras.constraints.MaxNorm(3.0, axis=0) if technique == "max_norm" else None
    stack = [keras.Input((784,))]
    if technique == "gaussian_noise":
        stack.append(layers.GaussianNoise(0.1))
    for units in (128, 64):
        stack.append(layers.Dense(units, activation="relu", kernel_regularizer=reg,
                                  kernel_constraint=constraint, activity_regularizer=activity))
        if technique == "dropout":
            stack.append(layers.Dropout(0.25))
        if technique == "batchnorm":
            stack.append(layers.BatchNormalization())
        if technique == "gaussian_dropout":
            stack.append(layers.GaussianDropout(0.25))
    stack.append(layers.Dense(10, activation="softmax"))
    model = keras.Sequential(stack)
    if technique == "label_smoothing":
        def custom_loss(y_true, y_pred):  # the notebook's
            epsilon = 0.1
            y_true_smooth = y_true * (1 - epsilon) + epsilon / 10
            return keras.losses.categorical_crossentropy(y_true_smooth, y_pred)
        loss = custom_loss
    else:
        loss = "categorical_crossentropy"
    optimizer = keras.optimizers.AdamW() if technique == "weight_decay" else \
        keras.optimizers.Adam(use_ema=True) if technique == "weight_ema" else "adam"
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


# Part 2's data-pipeline layers, applied to each training batch of images and one-hot targets,
# as Keras 3's documentation applies them (in the input pipeline, training data only).
BATCH_LAYERS = {
    "mixup": lambda keras, seed: keras.layers.MixUp(alpha=0.2, seed=seed),
    "cutmix": lambda keras, seed: keras.layers.CutMix(factor=1.0, seed=seed),
    "random_erasing": lambda keras, seed: keras.layers.RandomErasing(
        factor=1.0, value_range=(0, 1), seed=seed),
}


def batch_transform(technique: str, seed: int):
    """(x, y) -> (x, y) through the technique's Keras layer, or None when it has none. The
    rows are flat 784-vectors; the layer sees them as 28x28x1 images."""
    if technique not in BATCH_LAYERS:
        return None
    import keras

    layer = BATCH_LAYERS[technique](keras, seed)

    def apply(x, y):
        return layer({"images": keras.ops.reshape(x, (-1, 28, 28, 1)), "labels": y},
                     training=True)

    if keras.backend.backend() == "tensorflow":  # as in a tf.data map: a graph, 20x faster
        import tensorflow as tf

        apply = tf.function(apply)

    def transform(x, y):
        out = apply(x, y)
        return (keras.ops.convert_to_numpy(out["images"]).reshape(x.shape),
                keras.ops.convert_to_numpy(out["labels"]))

    return transform


def reshuffled_batches(x, y, batch_size: int, seed: int, transform=None):
    """x and y in batches of `batch_size`, in a fresh order every epoch, as the notebook's
    unseeded `model.fit(..., batch_size=64)` trains: epoch e's order is the permutation
    numpy draws from (seed, e), so runs are reproducible yet no two epochs see the same order.
    `transform(x, y)`, where given, maps each batch (batch_transform).

    Why not `fit(x, y, shuffle=True)` after `keras.utils.set_random_seed`: Keras 3 on
    TensorFlow shuffles arrays with a random op inside a tf.data map, and once TensorFlow's
    global seed is set that op replays one permutation on every epoch."""
    import keras

    class Reshuffled(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = self.permutation()
            self.served = []  # the rows of each batch served, for tests

        def permutation(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(y))

        def __len__(self):
            return -(-len(y) // batch_size)  # the partial last batch is trained on too

        def __getitem__(self, i):
            rows = self.order[i * batch_size:(i + 1) * batch_size]
            self.served.append(rows)
            return (x[rows], y[rows]) if transform is None else transform(x[rows], y[rows])

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self.permutation()

    return Reshuffled()


class EpochTimer:
    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):  # after validation
                self.seconds.append(time.perf_counter() - self.start)

        return Timer()


def run_keras(technique: str, dataset: data.Dataset, epochs: int | None, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    config = presets.preset(technique)
    epochs = epochs or config.epochs
    x, y, xv, yv, xt, yt = arrays(technique, dataset)
    model = keras_model(technique)
    timer = EpochTimer()
    callbacks = [timer]
    if technique == "early_stopping":
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=3))
    if technique == "augmentation":
        try:
            from keras.preprocessing.image import ImageDataGenerator
        except ImportError:  # Keras 3 keeps the notebook's generator as a legacy class
            from keras.src.legacy.preprocessing.image import ImageDataGenerator

        datagen = ImageDataGenerator(rotation_range=10, width_shift_range=0.1,
                                     height_shift_range=0.1, shear_range=0.2, zoom_range=0.2,
                                     fill_mode="nearest")
        x, xv, xt = (a.reshape(-1, 28, 28, 1) for a in (x, xv, xt))
        datagen.fit(x)
        model.fit(datagen.flow(x, y, batch_size=64), epochs=epochs, validation_data=(xv, yv),
                  callbacks=callbacks, verbose=0)
        _, accuracy = model.evaluate(xt, yt, verbose=0)
    else:
        cnn = config.model == "cnn"  # spatial_dropout: images and integer labels, as above
        x, xv, xt = (a.reshape((-1, 28, 28, 1) if cnn else (-1, 784)) for a in (x, xv, xt))
        targets = (lambda labels: labels) if cnn else (  # noqa: E731
            lambda labels: keras.utils.to_categorical(labels, 10))
        # validation_data = the rows validation_split=0.2 would take (see arrays()).
        model.fit(reshuffled_batches(x, targets(y), 64, seed,
                                     batch_transform(technique, seed)), epochs=epochs,
                  validation_data=(xv, targets(yv)), callbacks=callbacks, verbose=0)
        _, accuracy = model.evaluate(xt, targets(yt), verbose=0)
    return {"epoch_seconds": timer.seconds[:], "steps_per_epoch": -(-len(y) // 64),
            "first_call_seconds": timer.seconds[0], "test_accuracy": float(accuracy),
            "epochs_run": len(timer.seconds)}


# ----------------------------------------------------------------------------- PyTorch

def torch_model(technique: str):
    from torch import nn

    if technique == "augmentation":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(13 * 13 * 32, 128), nn.ReLU(), nn.Linear(128, 10))
    stack, width = [nn.Flatten()], 784
    for units in (128, 64):
        stack += [nn.Linear(width, units), nn.ReLU()]
        if technique == "dropout":
            stack.append(nn.Dropout(0.25))
        if technique == "batchnorm":  # Keras' momentum 0.99 is PyTorch's 0.01
            stack.append(nn.BatchNorm1d(units, eps=1e-3, momentum=0.01))
        width = units
    stack.append(nn.Linear(width, 10))
    for m in stack:  # Keras' initialisers, for comparable results
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*stack)


def torch_augment(images, generator):
    """ImageDataGenerator's ranges (rotation 10 deg, shifts 0.1, shear 0.2 deg, zoom 0.2,
    nearest fill) with affine_grid + grid_sample, per batch (torchvision is not used)."""
    import math

    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    u = lambda lo, hi: torch.empty(n).uniform_(lo, hi, generator=generator)  # noqa: E731
    theta, shear = u(-10, 10) * math.pi / 180, u(-0.2, 0.2) * math.pi / 180
    tx, ty, zx, zy = u(-0.2, 0.2), u(-0.2, 0.2), u(0.8, 1.2), u(0.8, 1.2)
    c, s = torch.cos(theta), torch.sin(theta)
    a = torch.stack([torch.stack([c * zx, (-s + torch.tan(shear) * c) * zy, tx], 1),
                     torch.stack([s * zx, (c + torch.tan(shear) * s) * zy, ty], 1)], 1)
    grid = F.affine_grid(a, images.shape, align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def run_torch(technique: str, dataset: data.Dataset, epochs: int | None, seed: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = presets.preset(technique)
    epochs = epochs or config.epochs
    x, y, xv, yv, xt, yt = (torch.from_numpy(np.asarray(a)) for a in arrays(technique, dataset))
    y, yv, yt = y.long(), yv.long(), yt.long()
    if technique == "augmentation":
        x, xv, xt = (a.reshape(-1, 1, 28, 28) for a in (x, xv, xt))
    model = torch_model(technique)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=generator)
    kernels = [m.weight for m in model if isinstance(m, torch.nn.Linear)][:-1]
    smoothing = config.label_smoothing

    def loss_fn(logits, labels):
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        if config.l1:
            loss = loss + config.l1 * sum(k.abs().sum() for k in kernels)
        if config.l2:
            loss = loss + config.l2 * sum(k.square().sum() for k in kernels)
        return loss

    def evaluate(images, labels):
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(b) for b in images.split(2000)])
        model.train()
        return float(loss_fn(logits, labels)), float((logits.argmax(1) == labels).float().mean())

    seconds, best, wait = [], float("inf"), 0
    for epoch in range(epochs):
        start = time.perf_counter()
        for images, labels in loader:
            if technique == "augmentation":
                images = torch_augment(images, generator)
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
        val_loss, _ = evaluate(xv, yv)
        seconds.append(time.perf_counter() - start)
        if config.early_stopping:  # Keras' rule
            wait += 1
            if val_loss < best:
                best, wait = val_loss, 0
            elif wait >= config.patience and epoch > 0:
                break
    return {"epoch_seconds": seconds, "steps_per_epoch": len(loader),
            "first_call_seconds": seconds[0], "test_accuracy": evaluate(xt, yt)[1],
            "epochs_run": len(seconds)}


RUNNERS = {"regjax": run_regjax, "keras-tensorflow": run_keras, "keras-jax": run_keras,
           "pytorch": run_torch}
# What each framework needs importable, and its environment.
REQUIRES = {"regjax": ("jax",), "keras-tensorflow": ("keras", "tensorflow"),
            "keras-jax": ("keras", "jax"), "pytorch": ("torch",)}
ENVIRONMENT = {"keras-tensorflow": {"KERAS_BACKEND": "tensorflow"},
               "keras-jax": {"KERAS_BACKEND": "jax"}}
