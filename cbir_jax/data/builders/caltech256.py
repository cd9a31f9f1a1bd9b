"""tfds builder for Caltech-256 from its 256_ObjectCategories folder (clutter class excluded)."""

from __future__ import annotations

import os
import re

import tensorflow_datasets as tfds

from cbir_jax.data.builders import image_examples

NUM_CLASSES = 256
CLUTTER = 257  # 257.clutter is not an object class; excluded as in the DFS-Net paper.
CONTENTS = ("Caltech-256's 256_ObjectCategories/ (or its contents): folders NNN.<name> "
            "(001.ak47 .. 256.toad; 257.clutter is ignored) of NNN_MMMM.jpg images")
_FOLDER = re.compile(r"^(\d{3})\.(.+)$")


def category_root(root: str) -> str:
  """`root/256_ObjectCategories` when it exists, else `root`."""
  inner = os.path.join(root, "256_ObjectCategories")
  return inner if os.path.isdir(inner) else root


def caltech_files(root: str) -> tuple[list[image_examples.ImageFile], list[str]]:
  """Candidate files and the 256 class names.

  Label = NNN - 1 of the folder NNN.<name>; id = NNN * 10000 + MMMM of the file NNN_MMMM.jpg
  (the file's trailing number). Class names are the folder names without "NNN."; a class whose
  folder is absent is named "NNN".

  Raises:
    ValueError: no class folders or images, a folder numbered outside 1..257, files without a
      number, or duplicate ids.
  """
  categories = category_root(root)
  names = [f"{k:03d}" for k in range(1, NUM_CLASSES + 1)]
  files = []
  for folder in image_examples.list_class_folders(categories):
    match = _FOLDER.match(folder)
    if not match:
      continue  # Not a category folder.
    number = int(match.group(1))
    if number == CLUTTER:
      continue
    if not 1 <= number <= NUM_CLASSES:
      raise ValueError(f"Caltech-256 folder {folder!r} is numbered outside 1..{NUM_CLASSES}")
    names[number - 1] = match.group(2)
    for name in image_examples.list_images(os.path.join(categories, folder)):
      image_number = image_examples.trailing_number(name)
      if image_number is None or image_number >= 10000:
        raise ValueError(f"Caltech-256 file {os.path.join(categories, folder, name)!r} is not "
                         "named NNN_MMMM.jpg")
      relpath = os.path.relpath(os.path.join(categories, folder, name), root)
      files.append(image_examples.ImageFile(os.path.join(root, relpath), relpath, number - 1,
                                            number * 10000 + image_number))
  if not files:
    raise ValueError(f"no Caltech-256 images found in {root!r}; it must contain {CONTENTS}")
  ids = [f.id for f in files]
  if len(set(ids)) != len(ids):
    raise ValueError(f"duplicate Caltech-256 image numbers in {root!r}")
  return files, names


class Caltech256(image_examples.ManualDirBuilder):
  """Caltech-256 without clutter: split "train" with every readable image at native size.

  Features: image uint8[h, w, 3], label int in [0, 256) (folder number - 1), id int64
  (NNN * 10000 + MMMM), path. Metadata: `manual_dir`, `skipped`, `class_names` (256 names).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point manual_dir at a folder holding {CONTENTS}."

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Caltech-256 object categories (Griffin et al. 2007), clutter excluded.",
        features=tfds.features.FeaturesDict(image_examples.common_features(
            (None, None, 3), tfds.features.ClassLabel(num_classes=NUM_CLASSES))),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = image_examples.manual_dir_of(dl_manager, CONTENTS)
    files, names = caltech_files(root)
    skipped = []
    self.info.metadata.update({"manual_dir": os.path.abspath(root), "skipped": skipped,
                               "class_names": names})
    return {"train": self._generate_examples(files, skipped)}

  def _generate_examples(self, files: list[image_examples.ImageFile], skipped: list[str]):
    yield from image_examples.generate_examples(files, split="train", skipped=skipped)
