"""tfds builder for any root/<class>/<image> tree, with a seeded stratified train/test split."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import tensorflow_datasets as tfds

from cbir_jax.data import splits as splits_lib
from cbir_jax.data.builders import image_examples

CONTENTS = "one sub-folder per class, root/<class_name>/<image> (sub-folders of a class included)"


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """One folder: `root`, its `class_names` (sorted folder names), the split's fraction and seed."""
  root: str = ""
  class_names: tuple[str, ...] = ()
  test_fraction: float = 0.2
  split_seed: int = 0


def list_classes(root: str) -> list[str]:
  """Sorted class folder names of `root`; FileNotFoundError/ValueError when there are none."""
  image_examples.check_manual_dir(root, CONTENTS)
  classes = image_examples.list_class_folders(root)
  if not classes:
    raise ValueError(f"no class folders in {root!r}; expected {CONTENTS}")
  return classes


def make_config(root: str | os.PathLike, *, test_fraction: float = 0.2,
                split_seed: int = 0) -> ImageFolderConfig:
  """The config of `root`: its name encodes the folder (hash of its absolute path) and the split,
  so one data_dir can hold several folders and splits without mixing them up."""
  root = os.path.abspath(os.fspath(root))
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  base = re.sub(r"[^a-z0-9]+", "_", os.path.basename(root).lower()).strip("_")[:40] or "root"
  digest = hashlib.sha1(root.encode()).hexdigest()[:10]
  name = f"{base}_{digest}_s{split_seed}_t{int(round(test_fraction * 1000))}"
  return ImageFolderConfig(name=name, root=root, class_names=tuple(list_classes(root)),
                           test_fraction=test_fraction, split_seed=split_seed,
                           description=f"Images of {root}")


def folder_files(root: str, class_names: tuple[str, ...]) -> list[image_examples.ImageFile]:
  """Image files of root/<class>/** in (class, relative path) order; id = position."""
  files = []
  for label, class_name in enumerate(class_names):
    class_dir = os.path.join(root, class_name)
    for dirpath, dirnames, _ in sorted(os.walk(class_dir)):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      for name in image_examples.list_images(dirpath):
        relpath = os.path.relpath(os.path.join(dirpath, name), root)
        files.append(image_examples.ImageFile(os.path.join(root, relpath), relpath, label,
                                              len(files)))
  if not files:
    raise ValueError(f"no images found in {root!r}; expected {CONTENTS}")
  return files


class ImageFolder(image_examples.ManualDirBuilder):
  """A user's image tree; construct with `config=make_config(root, ...)`.

  Splits "train" and "test": `splits.stratified_split` of the image files (by class) with the
  config's test_fraction and split_seed, drawn over the image files found (an unreadable file
  is skipped afterwards, so its side is one short). Images keep their native size. Features: image
  uint8[h, w, 3], label (ClassLabel of the class folder names), id int64 (position of the file
  in (class, path) order), path. Metadata: `manual_dir`, `skipped`.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Point manual_dir at a folder with {CONTENTS}."

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, ImageFolderConfig) or not config.class_names:
      raise ValueError("ImageFolder needs config=image_folder.make_config(root)")
    return self.dataset_info_from_configs(
        description=f"Image folder {config.root}.",
        features=tfds.features.FeaturesDict(image_examples.common_features(
            (None, None, 3), tfds.features.ClassLabel(names=config.class_names))),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    root = image_examples.manual_dir_of(dl_manager, CONTENTS, default=config.root)
    classes = tuple(list_classes(root))
    if classes != tuple(config.class_names):
      raise ValueError(f"class folders of {root!r} {classes} differ from the config's "
                       f"{tuple(config.class_names)}; make the config from this folder")
    files = folder_files(root, classes)
    train, test = splits_lib.stratified_split([f.label for f in files], config.test_fraction,
                                              config.split_seed)
    if not test.size:
      raise ValueError(f"{root!r} has {len(files)} image(s) but no class with 2 or more, so "
                       "there is nothing to put in the test split")
    skipped = []
    self.info.metadata.update({"manual_dir": os.path.abspath(root), "skipped": skipped})
    return {"train": self._generate_examples("train", [files[i] for i in train], skipped),
            "test": self._generate_examples("test", [files[i] for i in test], skipped)}

  def _generate_examples(self, split: str, files: list[image_examples.ImageFile],
                         skipped: list[str]):
    yield from image_examples.generate_examples(files, split=split, skipped=skipped)
