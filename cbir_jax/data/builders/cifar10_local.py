"""tfds builder for CIFAR-10 from local files: the official python pickles or a JPEG folder tree."""

from __future__ import annotations

import csv
import os
import pickle

import numpy as np
import tensorflow_datasets as tfds

from cbir_jax.data.builders import image_examples

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
# Rows per official batch: train id = (k - 1) * BATCH_ROWS + row for data_batch_k; test id = row.
BATCH_ROWS = 10000
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"

PYTHON_CONTENTS = ("the official CIFAR-10 python batches (cifar-10-batches-py/): data_batch_1 .. "
                   "data_batch_5, test_batch and batches.meta")
JPEG_CONTENTS = ("train_jpeg/<class>/NNNN.jpg (the whole training set) and/or "
                 "data_batch_<k>_jpeg/<class>/NNNN.jpg (train batches), and test_batch_jpeg/"
                 "<class>/NNNN.jpg (test), 32x32 JPEGs, optionally with <batch>_index.csv "
                 "(columns batch_index, jpeg_path) giving each file's official batch row")
# The folder of all 50,000 training images, <class>/NNNN.jpg with NNNN the image's rank within
# its class in the official order (../shared/datasets/README.md). With it, split "train" is
# these 50,000 and the data_batch_<k>_jpeg folders form split "train_batches" (10,000 for
# data_batch_1 alone); without it, "train" is the data_batch_<k>_jpeg folders as before.
WHOLE_TRAIN = "train"


def detect_layout(root: str) -> str:
  """"python" when `root` holds official pickles, "jpeg" when it holds *_jpeg folders.

  Raises:
    FileNotFoundError: neither layout, naming root and what it must contain.
  """
  image_examples.check_manual_dir(root, f"{PYTHON_CONTENTS}, or {JPEG_CONTENTS}")
  if any(os.path.isfile(os.path.join(root, b)) for b in TRAIN_BATCHES + (TEST_BATCH,)):
    return "python"
  if any(os.path.isdir(os.path.join(root, f"{b}_jpeg"))
         for b in TRAIN_BATCHES + (TEST_BATCH, WHOLE_TRAIN)):
    return "jpeg"
  raise FileNotFoundError(f"manual_dir {root!r} holds neither CIFAR-10 layout; it must contain "
                          f"{PYTHON_CONTENTS}, or {JPEG_CONTENTS}")


def _check_meta(root: str) -> None:
  """If batches.meta exists, its label_names must be CLASS_NAMES (ValueError otherwise)."""
  path = os.path.join(root, "batches.meta")
  if not os.path.isfile(path):
    return
  with open(path, "rb") as f:
    meta = pickle.load(f, encoding="bytes")
  names = tuple(n.decode() if isinstance(n, bytes) else n for n in meta[b"label_names"])
  if names != CLASS_NAMES:
    raise ValueError(f"{path}: label_names {names} are not the CIFAR-10 names {CLASS_NAMES}")


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads one official pickle: (images uint8[n, 32, 32, 3], labels int64[n]).

  The pickle is a dict with b"data" uint8[n, 3072] (R plane, G plane, B plane, each 32x32
  row-major) and b"labels" (n ints). Only open pickles from a source you trust.

  Raises:
    ValueError: the file is unreadable, truncated or not in that format (naming the file).
  """
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
  except Exception as e:  # pylint: disable=broad-except  # Unpickling raises many types.
    raise ValueError(f"{path} is not a CIFAR-10 python batch (dict with b'data' uint8[n, 3072] "
                     f"and b'labels'): {type(e).__name__}: {e}") from e
  if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != data.shape[:1]:
    raise ValueError(f"{path}: expected data [n, 3072] and n labels, got data {data.shape}, "
                     f"labels {labels.shape}")
  if labels.size and not (labels.min() >= 0 and labels.max() < len(CLASS_NAMES)):
    raise ValueError(f"{path}: labels outside [0, 10)")
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _batch_offset(batch: str) -> int:
  if batch in (TEST_BATCH, WHOLE_TRAIN):
    return 0
  return (int(batch.rsplit("_", 1)[1]) - 1) * BATCH_ROWS


def jpeg_files(root: str, batch: str) -> list[image_examples.ImageFile]:
  """Candidate files of `root/<batch>_jpeg/<class>/*`, ids from `<batch>_index.csv` if present.

  With the index CSV, id = offset + the official batch row (offset (k - 1) * 10000 for
  data_batch_k, 0 for test_batch), so ids agree with the python layout. Without it, id = offset
  + position in (class, file name) order; for `train_jpeg/` (batch "train", offset 0) that is
  class * 5000 + the rank within the class, which is not the official row (the folder carries
  no row index), so its ids differ from the python layout's.
  """
  folder = os.path.join(root, f"{batch}_jpeg")
  rows = {}
  index_csv = os.path.join(root, f"{batch}_index.csv")
  if os.path.isfile(index_csv):
    with open(index_csv, newline="") as f:
      rows = {os.path.normpath(r["jpeg_path"]): int(r["batch_index"]) for r in csv.DictReader(f)}
  files = []
  for class_name in image_examples.list_class_folders(folder):
    if class_name not in CLASS_NAMES:
      raise ValueError(f"unknown CIFAR-10 class folder {os.path.join(folder, class_name)!r}; "
                       f"expected one of {', '.join(CLASS_NAMES)}")
    for name in image_examples.list_images(os.path.join(folder, class_name)):
      relpath = os.path.join(f"{batch}_jpeg", class_name, name)
      position = rows.get(os.path.normpath(relpath), len(files) if not rows else None)
      if position is None:
        raise ValueError(f"{relpath} is not listed in {index_csv}")
      files.append(image_examples.ImageFile(os.path.join(root, relpath), relpath,
                                            CLASS_NAMES.index(class_name),
                                            _batch_offset(batch) + position))
  return files


class Cifar10LocalConfig(tfds.core.BuilderConfig):
  """`python`: official pickles; `jpeg`: the *_jpeg folder layout."""


class Cifar10Local(image_examples.ManualDirBuilder):
  """CIFAR-10 from a manual dir, splits "train" and "test" (those whose files are present).

  In the JPEG layout with `train_jpeg/`, "train" is its 50,000 images and the
  data_batch_<k>_jpeg folders, if any, form split "train_batches" (data_batch_1 alone: the
  10,000-image training split of older CPU-scale runs).

  Features: image uint8[32, 32, 3], label (ClassLabel of CLASS_NAMES), id int64 (see
  BATCH_ROWS and `jpeg_files`), path (batch file or JPEG, relative to the manual dir).
  Metadata: `manual_dir`, `skipped`, `batches` (split -> the batch folders or files read).
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "JPEG layout: train_jpeg/ (all 50,000 training images) is split "
                            "'train' when present; data_batch_<k>_jpeg then is 'train_batches'."}
  BUILDER_CONFIGS = [
      Cifar10LocalConfig(name="python", description=f"Reads {PYTHON_CONTENTS}."),
      Cifar10LocalConfig(name="jpeg", description=f"Reads {JPEG_CONTENTS}."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (f"Point manual_dir at a folder holding {PYTHON_CONTENTS} "
                                  f"(config 'python'), or {JPEG_CONTENTS} (config 'jpeg').")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="CIFAR-10 (Krizhevsky 2009) read from local files.",
        features=tfds.features.FeaturesDict(image_examples.common_features(
            (32, 32, 3), tfds.features.ClassLabel(names=CLASS_NAMES))),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    python = self.builder_config.name == "python"
    root = image_examples.manual_dir_of(dl_manager, PYTHON_CONTENTS if python else JPEG_CONTENTS)
    _check_meta(root)
    suffix = "" if python else "_jpeg"
    present = lambda b: (os.path.isfile if python else os.path.isdir)(
        os.path.join(root, b + suffix))
    batches = [b for b in TRAIN_BATCHES if present(b)]
    splits = {"train": batches, "test": [TEST_BATCH] if present(TEST_BATCH) else []}
    if not python and present(WHOLE_TRAIN):
      splits.update(train=[WHOLE_TRAIN], train_batches=batches)
    splits = {k: v for k, v in splits.items() if v}
    if not splits:
      raise FileNotFoundError(f"manual_dir {root!r} must contain "
                              f"{PYTHON_CONTENTS if python else JPEG_CONTENTS}")
    skipped = []
    self.info.metadata.update({"manual_dir": os.path.abspath(root), "skipped": skipped,
                               "batches": splits})
    if python:
      # Every pickle is read (and checked) before generation starts: a bad file fails here,
      # naming the file, never half-way through writing a split (about 180 MB for all six).
      arrays = {k: [(b, read_batch(os.path.join(root, b))) for b in v] for k, v in splits.items()}
      return {k: self._generate_python(v) for k, v in arrays.items()}
    files = {k: [f for b in v for f in jpeg_files(root, b)] for k, v in splits.items()}
    for k, v in files.items():
      if not v:
        raise ValueError(f"no images found for split {k} in {root!r}; expected {JPEG_CONTENTS}")
    return {k: self._generate_examples(k, v, skipped) for k, v in files.items()}

  def _generate_python(self, batches: list[tuple[str, tuple[np.ndarray, np.ndarray]]]):
    for batch, (images, labels) in batches:
      for row, (image, label) in enumerate(zip(images, labels)):
        key = _batch_offset(batch) + row
        yield key, {"image": image, "label": int(label), "id": key, "path": batch}

  def _generate_examples(self, split: str, files: list[image_examples.ImageFile],
                         skipped: list[str]):
    yield from image_examples.generate_examples(files, split=split, shape=(32, 32, 3),
                                                skipped=skipped)
