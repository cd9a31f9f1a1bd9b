"""load_arrays: every supported data set as in-memory uint8 arrays, by name and split."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from absl import logging
import numpy as np

from cbir_jax.data import digits as digits_lib
from cbir_jax.data import images as images_lib
from cbir_jax.data import splits

# Default held-out fraction of the stratified train/test splits (digits, caltech256,
# image_folder); corel1k's database/query split is 50/50.
TEST_FRACTION = 0.2
COREL_QUERY_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class ImageArrays:
  """A data set split held in memory.

  Attributes:
    images: uint8[n, h, w, c] (c = 1 for digits, 3 for the photo sets).
    labels: int32[n] in [0, len(class_names)).
    ids: int64[n] stable per-example ids, ascending (see load_arrays for each data set).
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


def _resolve_manual_dir(manual_dir, data_dir, contents: str) -> str:
  """manual_dir, or tfds's default <data_dir>/downloads/manual; checked to exist."""
  from cbir_jax.data.builders import image_examples  # pylint: disable=g-import-not-at-top

  if manual_dir is None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    base = os.fspath(data_dir) if data_dir is not None else tfds.core.constants.DATA_DIR
    manual_dir = os.path.join(os.path.expanduser(base), "downloads", "manual")
  return image_examples.check_manual_dir(os.path.abspath(os.fspath(manual_dir)), contents)


def _prepare(make_builder, manual_dir: str):
  """The builder `make_builder()` returns, prepared from manual_dir (nothing downloads); a copy
  prepared from another folder is rebuilt.

  Two jobs started at once (say a training run and an experiment on the same data set) would
  both generate the data set and the second would fail renaming its copy into place, so the
  check and the preparation hold an exclusive lock file beside the prepared data
  (`<data_dir>/<name>/.prepare.lock`), and the builder is made inside it: a job that waited
  reads what the first one wrote.
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  probe = make_builder()
  lock_dir = os.path.join(os.fspath(probe.data_dir_root), probe.name)
  os.makedirs(lock_dir, exist_ok=True)
  with open(os.path.join(lock_dir, ".prepare.lock"), "a+", encoding="utf-8") as lock:
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    try:
      builder = make_builder()
      mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
      if builder.is_prepared() and builder.info.metadata.get("manual_dir") != manual_dir:
        logging.info("%s in %s was prepared from %s; rebuilding it from %s", builder.name,
                     builder.data_dir, builder.info.metadata.get("manual_dir"), manual_dir)
        mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir, download_mode=mode))
    finally:
      fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
  return builder


def _read_splits(builder, split_names: Sequence[str], image_size,
                 class_names: list[str]) -> ImageArrays:
  """Reads prepared tfds splits into ImageArrays sorted by id (resizing when image_size).

  Images are decoded with PIL (`images.decode_rgb`), the decoder every other path uses.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  images, labels, ids = [], [], []
  for split in split_names:
    # The stored bytes (the original JPEG, or PNG) are decoded with PIL rather than TF, so that
    # load_arrays agrees pixel for pixel with images.decode_rgb on a user's query file (TF's
    # default JPEG decoder differs by about 1/255 on average).
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    for example in tfds.as_numpy(dataset):
      image = images_lib.decode_rgb(example["image"])
      images.append(image if image_size is None else images_lib.resize(image, image_size))
      labels.append(example["label"])
      ids.append(example["id"])
  if not images:
    raise ValueError(f"{builder.name} split(s) {list(split_names)} hold no readable images")
  shapes = sorted({image.shape for image in images})
  if len(shapes) > 1:
    raise ValueError(f"{builder.name} images have different sizes {shapes[:4]}...; pass "
                     "image_size=(h, w) to resize them")
  order = np.argsort(np.asarray(ids, np.int64), kind="stable")
  return ImageArrays(np.stack(images)[order], np.asarray(labels, np.int32)[order],
                     np.asarray(ids, np.int64)[order], class_names)


def _load_corel1k(split, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  from cbir_jax.data.builders import corel1k  # pylint: disable=g-import-not-at-top

  root = _resolve_manual_dir(manual_dir, data_dir, corel1k.CONTENTS)
  builder = _prepare(lambda: corel1k.Corel1k(data_dir=data_dir), root)
  arrays = _read_splits(builder, ["train"], image_size, list(corel1k.CLASS_NAMES))
  if split in ("train", "all"):
    return arrays
  database, query = splits.stratified_split(arrays.labels, COREL_QUERY_FRACTION, seed)
  return _take(arrays, database if split == "database" else query)


def _load_cifar10_local(split, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  del seed  # Official splits.
  from cbir_jax.data.builders import cifar10_local  # pylint: disable=g-import-not-at-top

  root = _resolve_manual_dir(manual_dir, data_dir, cifar10_local.PYTHON_CONTENTS + ", or "
                             + cifar10_local.JPEG_CONTENTS)
  layout = cifar10_local.detect_layout(root)
  builder = _prepare(lambda: cifar10_local.Cifar10Local(data_dir=data_dir, config=layout), root)
  if split not in builder.info.splits:
    raise ValueError(f"cifar10_local in {root!r} has no {split!r} split (found "
                     f"{sorted(builder.info.splits)})")
  return _read_splits(builder, [split], image_size, list(cifar10_local.CLASS_NAMES))


def _load_cifar10_packed(split, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  """CIFAR-10 from a folder made by bin/pack_dataset.py (`data.packed`); no tfds, no TF.
  data_dir: where decoded splits are cached (default: packed.default_cache_dir())."""
  del seed  # The official splits.
  from cbir_jax.data import packed  # pylint: disable=g-import-not-at-top
  if manual_dir is None:
    raise FileNotFoundError("cifar10_packed needs manual_dir=<folder holding images.bin and "
                            "index.npz, made by bin/pack_dataset.py>")
  return packed.load_packed(manual_dir, split, image_size, cache_dir=data_dir)


def _load_caltech256(split, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  from cbir_jax.data.builders import caltech256  # pylint: disable=g-import-not-at-top

  root = _resolve_manual_dir(manual_dir, data_dir, caltech256.CONTENTS)
  builder = _prepare(lambda: caltech256.Caltech256(data_dir=data_dir), root)
  arrays = _read_splits(builder, ["train"], image_size,
                        list(builder.info.metadata["class_names"]))
  return _split_train_test(arrays, split, seed, TEST_FRACTION, ("train", "test"))


def _load_image_folder(split, manual_dir, data_dir, image_size, seed) -> ImageArrays:
  from cbir_jax.data.builders import image_folder  # pylint: disable=g-import-not-at-top

  root = _resolve_manual_dir(manual_dir, data_dir, image_folder.CONTENTS)
  config = image_folder.make_config(root, test_fraction=TEST_FRACTION, split_seed=seed)
  builder = _prepare(lambda: image_folder.ImageFolder(data_dir=data_dir, config=config), root)
  names = ["train", "test"] if split == "all" else [split]
  return _read_splits(builder, names, image_size, list(config.class_names))


# name -> (loader, valid splits)
_DATASETS = {
    "digits": (_load_digits, ("train", "test", "all")),
    "corel1k": (_load_corel1k, ("train", "all", "database", "query")),
    "cifar10_local": (_load_cifar10_local, ("train", "test", "train_batches")),
    "cifar10_packed": (_load_cifar10_packed, ("train", "test")),
    "caltech256": (_load_caltech256, ("train", "test", "all")),
    "image_folder": (_load_image_folder, ("train", "test", "all")),
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

  The photo sets are built once with their tfds builder (`cbir_jax.data.builders`) from
  `manual_dir` into `data_dir` (nothing downloads) and then read back; a copy prepared from a
  different manual_dir is rebuilt. Unreadable images are skipped and logged by the builder.

  Splits (all derived splits are stratified by class and seeded by `seed`):
    digits: "train" (database) / "test" (held-out queries), test fraction 0.2; "all" (1,797
      images, 8x8x1, ids = sklearn row).
    corel1k: "train" = "all" (1,000 images, ids = image numbers); "database" / "query": 50/50.
    cifar10_local: "train" / "test", the official splits present in manual_dir (python
      pickles or the *_jpeg folders, detected); 32x32x3; ids = (k - 1) * 10000 + row of
      data_batch_k, test ids = row of test_batch; `seed` unused. With a `train_jpeg/` folder
      (all 50,000 training images) "train" is that folder (ids = class * 5000 + rank in class)
      and "train_batches" the data_batch_<k>_jpeg folders (e.g. data_batch_1's 10,000).
    caltech256: "all" (clutter excluded; ids = NNN * 10000 + MMMM), "train" / "test" (0.2).
    image_folder: "train" / "test" (0.2) made by the builder with split seed `seed`; "all" =
      both; ids = position of the file in (class, path) order.

  Args:
    name: one of `list_datasets()`.
    split: one of `list_splits(name)`.
    manual_dir: folder holding the raw files (not used by digits); default
      <data_dir>/downloads/manual as in tfds.
    data_dir: tfds data_dir for the prepared data set (default: tfds's default,
      $TFDS_DATA_DIR or ~/tensorflow_datasets).
    image_size: None (native size) or s or (h, w): every image is resized to (h, w) with PIL's
      bilinear filter over the whole image (no crop, aspect ratio not kept; antialiased when
      shrinking), so images of different sizes stack. Needed for corel1k (384x256 and
      256x384), caltech256 and most image folders.
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


# ------------------------------------------------------------------ config -> split (one place)

VALIDATION = "validation"


def config_image_size(value: Any) -> tuple[int, int] | None:
  """The one rule for a config's `dataset.image_size`: None = each image's native size; a
  positive int s = (s, s); a (height, width) pair. Anything else (0, -1, "", a negative or
  fractional size) is a ValueError naming the value, raised before any work starts."""
  if value is None:
    return None
  if isinstance(value, bool) or (not isinstance(value, (int, np.integer))
                                 and not (isinstance(value, Sequence)
                                          and not isinstance(value, str))):
    raise ValueError(f"dataset.image_size must be None (native size), a positive int or "
                     f"(height, width), got {value!r}")
  items = [value] if isinstance(value, (int, np.integer)) else list(value)
  if len(items) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                     or s < 1 for s in items):
    raise ValueError(f"dataset.image_size must be None (native size), a positive int or "
                     f"(height, width), got {value!r}")
  return images_lib.parse_image_size(int(items[0]) if len(items) == 1 else tuple(items))


def validation_fraction(dataset: Any) -> float:
  """`dataset.validation_fraction` (default 0 = no validation split), checked to be in [0, 1)."""
  fraction = float(_field(dataset, "validation_fraction", 0.0) or 0.0)
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"dataset.validation_fraction must be in [0, 1), got {fraction}")
  return fraction


def _field(dataset: Any, key: str, default: Any = None) -> Any:
  getter = getattr(dataset, "get", None)
  return getter(key, default) if getter is not None else getattr(dataset, key, default)


def config_splits(dataset: Any) -> list[str]:
  """The split names a `dataset` block may use: the data set's own, plus "validation" when
  `validation_fraction` > 0."""
  names = list(list_splits(_field(dataset, "name")))
  return names + [VALIDATION] if validation_fraction(dataset) > 0 else names


def check_dataset_config(dataset: Any, splits: Sequence[str] = ()) -> None:
  """Checks a config's `dataset` block (name, image_size, validation_fraction, `splits`)
  before any work; ValueError names the field and its value."""
  name = _field(dataset, "name")
  _check_name(name)
  config_image_size(_field(dataset, "image_size"))
  valid = config_splits(dataset)
  for split in splits:
    if split and split not in valid:
      raise ValueError(f"unknown split {split!r} for data set {name}; valid: {', '.join(valid)}")


def load_split(dataset: Any, split: str, *, seed: int, carve_validation: bool = True
               ) -> ImageArrays:
  """Loads one split of the data set a config's `dataset` block describes.

  This is the one place where a config becomes arrays (trainer, demo, experiments, extraction,
  comparison and query-by-image all call it). Fields: `name`, `manual_dir` ("" or None: tfds's
  default), `data_dir`, `image_size` (see `config_image_size`), `validation_fraction` and
  `train_split` (default "train").

  Validation: with `validation_fraction` f > 0, a seeded, class-stratified fraction f of the
  training split (`train_split`) is the split "validation", and loading `train_split` returns
  the rest (unless `carve_validation=False`, which returns the whole training split, e.g. as a
  retrieval database). Choices (recipes, fusion variants, bit counts, checkpoints) are made on
  "validation", never on query images. The carve is seeded by `seed`.

  Args:
    dataset: a ConfigDict (or mapping) with the fields above.
    split: a split of the data set, or "validation".
    seed: seed of the data set's derived splits and of the validation carve.
    carve_validation: see above.
  """
  check_dataset_config(dataset, [split])
  name = _field(dataset, "name")
  train_split = _field(dataset, "train_split", None) or "train"
  fraction = validation_fraction(dataset)
  source = train_split if split == VALIDATION else split
  arrays = load_arrays(name, source, manual_dir=_field(dataset, "manual_dir") or None,
                       data_dir=_field(dataset, "data_dir") or None,
                       image_size=config_image_size(_field(dataset, "image_size")),
                       seed=int(seed))
  if fraction > 0 and (split == VALIDATION or (split == train_split and carve_validation)):
    rest, held = splits.stratified_split(arrays.labels, fraction, int(seed) + 1)
    return _take(arrays, held if split == VALIDATION else rest)
  return arrays
