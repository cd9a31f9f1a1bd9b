"""tfds builder for Corel-1K (WANG / SIMPLIcity): 1,000 JPEGs of 10 classes, from a manual dir."""

from __future__ import annotations

import csv
import os

import tensorflow_datasets as tfds

from cbir_jax.data.builders import image_examples

# Class k holds the original images 100k .. 100k + 99.
CLASS_NAMES = ("africans", "beaches", "buildings", "buses", "dinosaurs", "elephants", "flowers",
               "horses", "mountains", "food")

CONTENTS = ("Corel-1K images, as <class_name>/<id>.jpg (class names: " + ", ".join(CLASS_NAMES)
            + ") with an optional labels.csv (columns id,label[,label_name],path), or the "
            "original flat folder of <id>.jpg files (label = id // 100)")


def corel_files(root: str) -> list[image_examples.ImageFile]:
  """The candidate files of a Corel-1K folder, sorted by id.

  Labels come from, in order of preference: `root/labels.csv` (columns id, label, path; path
  relative to root); the class folder name (one of CLASS_NAMES, any case); for a flat folder,
  id // 100. Ids are the image numbers (the file name's trailing integer when there is no CSV).

  Raises:
    ValueError: no images, unknown class folder, bad label, file name without a number, or
      duplicate ids.
  """
  csv_path = os.path.join(root, "labels.csv")
  files = []
  if os.path.isfile(csv_path):
    with open(csv_path, newline="") as f:
      for row in csv.DictReader(f):
        label = int(row["label"])
        if not 0 <= label < len(CLASS_NAMES):
          raise ValueError(f"{csv_path}: label {label} of id {row['id']} not in [0, 10)")
        relpath = row["path"]
        files.append(image_examples.ImageFile(os.path.join(root, relpath), relpath, label,
                                              int(row["id"])))
  else:
    folders = image_examples.list_class_folders(root)
    lower = [c.lower() for c in CLASS_NAMES]
    if folders:
      groups = []
      for folder in folders:
        if folder.lower() not in lower:
          raise ValueError(f"unknown Corel-1K class folder {os.path.join(root, folder)!r}; "
                           f"expected one of {', '.join(CLASS_NAMES)}")
        groups.append((folder, lower.index(folder.lower())))
    else:
      groups = [("", None)]
    for folder, label in groups:
      for name in image_examples.list_images(os.path.join(root, folder)):
        relpath = os.path.join(folder, name)
        number = image_examples.trailing_number(name)
        if number is None:
          raise ValueError(f"Corel-1K file {os.path.join(root, relpath)!r} has no image number "
                           "in its name (expected <id>.jpg)")
        if label is None and not 0 <= number // 100 < len(CLASS_NAMES):
          raise ValueError(f"flat Corel-1K file {relpath!r}: id {number} not in [0, 1000)")
        files.append(image_examples.ImageFile(os.path.join(root, relpath), relpath,
                                              number // 100 if label is None else label, number))
  if not files:
    raise ValueError(f"no images found in {root!r}; it must contain {CONTENTS}")
  ids = [f.id for f in files]
  if len(set(ids)) != len(ids):
    raise ValueError(f"duplicate Corel-1K image ids in {root!r}")
  return sorted(files, key=lambda f: f.id)


class Corel1k(image_examples.ManualDirBuilder):
  """Corel-1K: split "train" with every readable image at its native size (384x256 or 256x384).

  Features: image uint8[h, w, 3], label (ClassLabel of CLASS_NAMES), id int64 (image number),
  path (relative to the manual dir). Metadata: `manual_dir`, `skipped` (relative paths).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point manual_dir at a folder holding {CONTENTS}."

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Corel-1K / WANG database: 1,000 Corel photos, 10 classes of 100.",
        features=tfds.features.FeaturesDict(image_examples.common_features(
            (None, None, 3), tfds.features.ClassLabel(names=CLASS_NAMES))),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = image_examples.manual_dir_of(dl_manager, CONTENTS)
    files = corel_files(root)
    skipped = []
    self.info.metadata.update({"manual_dir": os.path.abspath(root), "skipped": skipped})
    return {"train": self._generate_examples(files, skipped)}

  def _generate_examples(self, files: list[image_examples.ImageFile], skipped: list[str]):
    yield from image_examples.generate_examples(files, split="train", skipped=skipped)
