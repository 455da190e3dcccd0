"""A TFDS builder that prepares MNIST-style IDX files as array_record data without
TensorFlow: IDX parsed with numpy, images encoded with Pillow.

TFDS' own mnist/fashion_mnist builders need TensorFlow to prepare; this one writes the
same features (`image` uint8 HxWx1, `label` of 10 classes) under the same dataset name,
so `tfds.data_source(name, data_dir=...)` reads the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from regjax.data import idx
from regjax.data.split import Split


def make_builder(name: str, data_dir, idx_dir) -> tfds.core.GeneratorBasedBuilder:
    """A builder that prepares dataset `name` from the IDX files in `idx_dir`."""
    splits = {split: idx.read_idx_split(Path(idx_dir), split) for split in idx.IDX_FILES}

    class IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("3.0.1")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=splits["train"].images.shape[1:]),
                    "label": tfds.features.ClassLabel(num_classes=splits["train"].classes),
                }),
                supervised_keys=("image", "label"),
                # Keep the files' row order: Keras' validation_split takes the last rows.
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # the IDX files are local; regjax.data downloads them
            return {name: self._generate_examples(split) for name, split in splits.items()}

        def _generate_examples(self, split: Split):
            for i, (image, label) in enumerate(zip(split.images, split.labels)):
                yield i, {"image": PIL.Image.fromarray(np.asarray(image)[..., 0]),
                          "label": int(label)}

    IdxBuilder.name = name
    return IdxBuilder(data_dir=os.fspath(data_dir), file_format="array_record")
