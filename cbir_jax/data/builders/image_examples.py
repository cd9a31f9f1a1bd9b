"""Shared builder helpers: find image files, and turn them into tfds examples, skipping bad ones."""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Iterable, Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from cbir_jax.data import images as images_lib


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """One candidate example: `path` (absolute), `relpath` (to the manual dir), label, id."""
  path: str
  relpath: str
  label: int
  id: int


def check_manual_dir(manual_dir: str | os.PathLike, what: str) -> str:
  """Returns manual_dir as a str; FileNotFoundError naming it and `what` it must hold."""
  path = os.fspath(manual_dir)
  if os.path.isdir(path) and not os.listdir(path):
    raise FileNotFoundError(f"manual_dir {path!r} is empty; it must contain {what}")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"manual_dir {path!r} does not exist or is not a folder; it must "
                            f"contain {what}")
  return path


def manual_dir_of(dl_manager: tfds.download.DownloadManager, what: str,
                  default: str | None = None) -> str:
  """The download manager's manual dir (else `default`), checked with `check_manual_dir`.

  Raises:
    FileNotFoundError: no manual dir was given (and no default), or it is missing or empty.
  """
  try:
    path = os.fspath(dl_manager.manual_dir)
  except AssertionError as e:  # tfds's way of saying: not given, missing or empty.
    if default is None:
      raise FileNotFoundError(f"{e} Pass download_config=tfds.download.DownloadConfig("
                              f"manual_dir=...) naming a folder that contains {what}") from e
    path = default
  return check_manual_dir(path, what)


def trailing_number(name: str) -> int | None:
  """The integer at the end of a file name's stem ("12.jpg" -> 12, "001_0003.jpg" -> 3)."""
  stem = os.path.splitext(name)[0]
  digits = len(stem) - len(stem.rstrip("0123456789"))
  return int(stem[-digits:]) if digits else None


def list_images(folder: str) -> list[str]:
  """Sorted file names (not paths) of image files directly in `folder` (hidden files skipped)."""
  return sorted(n for n in os.listdir(folder)
                if not n.startswith(".") and images_lib.is_image_file(n)
                and os.path.isfile(os.path.join(folder, n)))


def list_class_folders(root: str) -> list[str]:
  """Sorted names of the non-hidden sub-folders of `root`."""
  return sorted(n for n in os.listdir(root)
                if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))


def generate_examples(files: Iterable[ImageFile], *, split: str,
                      shape: tuple[int, int, int] | None = None,
                      skipped: list[str] | None = None) -> Iterator[tuple[int, dict]]:
  """Yields tfds examples `(id, {"image", "label", "id", "path"})`, skipping unreadable files.

  Every file is fully decoded (`images.load_for_tfds`): a corrupt, truncated or unreadable file,
  or one whose (h, w, c) is not `shape` when given, is logged by path with absl.logging.warning
  and skipped; at the end the number of skipped files of the split is logged. Generation never
  stops on a bad file; only a split in which no file at all is readable raises ValueError.

  Args:
    files: the candidates, ids unique.
    split: split name, for the log lines.
    shape: required (h, w, 3) or None for any size.
    skipped: if given, the relative paths of skipped files are appended to it.
  """
  n_skipped = n_ok = 0
  for f in files:
    try:
      image = images_lib.load_for_tfds(f.path)
      if shape is not None and images_lib.image_shape(image) != tuple(shape):
        raise ValueError(f"image shape {images_lib.image_shape(image)} is not {tuple(shape)}")
    # PIL raises many types on malformed files (OSError, SyntaxError, struct.error, IndexError,
    # DecompressionBombError, ...): any failure on one file skips that file, never the split.
    except Exception as e:  # pylint: disable=broad-except
      n_skipped += 1
      if skipped is not None:
        skipped.append(f.relpath)
      logging.warning("skipping unreadable image %s: %s: %s", f.path, type(e).__name__, e)
      continue
    n_ok += 1
    yield f.id, {"image": image, "label": f.label, "id": f.id, "path": f.relpath}
  if not n_ok:
    raise ValueError(f"split {split}: none of its {n_skipped} image file(s) could be read "
                     "(each was logged above)")
  if n_skipped:
    logging.warning("split %s: skipped %d unreadable image(s), kept %d", split, n_skipped, n_ok)
  else:
    logging.info("split %s: %d images, none skipped", split, n_ok)


def common_features(image_shape: tuple, label_feature) -> dict:
  """The feature dict every builder uses: image uint8[h, w, 3], label, id int64, path str."""
  return {
      "image": tfds.features.Image(shape=image_shape),
      "label": label_feature,
      "id": tfds.features.Scalar(dtype=np.int64),
      "path": tfds.features.Text(),
  }


class ManualDirBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of our builders: a GeneratorBasedBuilder that never downloads.

  It only fixes `code_path`: tfds 4.9.10 looks up `importlib_resources` (a package it no longer
  installs on Python >= 3.9) to locate a builder defined outside tensorflow_datasets; the file
  of the class is what it computes in the end.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:  # pytype: disable=signature-mismatch
    return epath.Path(inspect.getfile(cls))
