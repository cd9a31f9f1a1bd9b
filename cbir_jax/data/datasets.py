"""load_arrays: every supported data set as in-memory uint8 arrays, by name and split."""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from cbir_jax.data import digits as digits_lib
from cbir_jax.data import images as images_lib
from cbir_jax.data import splits

# Default held-out fraction of the stratified train/test splits (digits, image_folder).
TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class ImageArrays:
  """A data set split held in memory.

  Attributes:
    images: uint8[n, h, w, c] (c = 1 for digits, 3 for the photo sets).
    labels: int32[n] in [0, len(class_names)).
    ids: int64[n] stable per-example ids (digits: sklearn row; corel1k: image number; ...).
    class_names: names of the labels, index = label.
  """
  images: np.ndarray
  labels: np.ndarray
  ids: np.ndarray
  class_names: list[str]

  def __len__(self) -> int:
    return int(self.images.shape[0])


def _take(arrays: ImageArrays, positions: np.ndarray) -> ImageArrays:
  return ImageArrays(arrays.images[positions], arrays.labels[positions], arrays.ids[positions],
                     list(arrays.class_names))


def _split_train_test(arrays: ImageArrays, split: str, seed: int, test_fraction: float,
                      names: tuple[str, str]) -> ImageArrays:
  """Returns `arrays` itself for split "all", else one side of a stratified seeded split."""
  if split == "all":
    return arrays
  train, test = splits.stratified_split(arrays.labels, test_fraction, seed)
  return _take(arrays, train if split == names[0] else test)


def _load_digits(split: str, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  del manual_dir, data_dir  # Embedded in scikit-learn.
  images, labels, class_names = digits_lib.load_digits_uint8()
  if image_size is not None:
    images = images_lib.resize_all(images, image_size)
  arrays = ImageArrays(images, labels, np.arange(images.shape[0], dtype=np.int64), class_names)
  return _split_train_test(arrays, split, seed, TEST_FRACTION, ("train", "test"))


# name -> (loader, valid splits)
_DATASETS = {
    "digits": (_load_digits, ("train", "test", "all")),
}


def list_datasets() -> list[str]:
  """Names accepted by `load_arrays`, sorted."""
  return sorted(_DATASETS)


def list_splits(name: str) -> tuple[str, ...]:
  """Splits accepted by `load_arrays(name, ...)`."""
  _check_name(name)
  return _DATASETS[name][1]


def _check_name(name: str) -> None:
  if name not in _DATASETS:
    raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(list_datasets())}")


def load_arrays(name: str, split: str, *, manual_dir: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None,
                image_size: int | Sequence[int] | None = None, seed: int = 0) -> ImageArrays:
  """Loads one split of a data set into memory.

  Splits:
    digits: "train" (database) / "test" (held-out queries): stratified, seeded by `seed`, test
      fraction 0.2; "all" (1,797 images, 8x8x1, ids = sklearn row).

  Args:
    name: one of `list_datasets()`.
    split: one of `list_splits(name)`.
    manual_dir: folder holding the raw files (not used by digits).
    data_dir: tfds data_dir for the prepared data set (default: tfds's default).
    image_size: None (native size) or s or (h, w): every image is resized with a bilinear resize
      of the whole image (no crop) so arrays of images of different sizes stack.
    seed: seed of the derived stratified splits.

  Returns:
    ImageArrays with images uint8[n, h, w, c], labels int32[n], ids int64[n] sorted ascending.

  Raises:
    ValueError: unknown name or split, bad image_size.
    FileNotFoundError: manual_dir missing, naming the path and what it must contain.
  """
  _check_name(name)
  loader, valid_splits = _DATASETS[name]
  if split not in valid_splits:
    raise ValueError(f"unknown split {split!r} for {name}; valid splits: "
                     f"{', '.join(valid_splits)}")
  size = images_lib.parse_image_size(image_size)
  return loader(split, manual_dir, data_dir, size, int(seed))
