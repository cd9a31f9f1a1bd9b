"""grain random-access data sources of images that need not fit in memory: a folder, a tfds set.

Both sources hold only an index (file paths, or tfds's ArrayRecord readers); `source[i]` reads
one record's encoded bytes. `decode_record` (a grain map, run in grain's worker threads) turns a
record into a fixed-shape example, so a pipeline holds at most its prefetch buffer of images:

  ImageFolderSource(root)         root/<class>/**/<image> (or images directly under root: one
                                  class); ids = position in (class, relative path) order, the
                                  ids the `image_folder` tfds builder gives the same tree.
  TfdsSource(builder, split)      a tfds data set prepared with file_format="array_record"
                                  (`builder.as_data_source`), images left encoded and decoded
                                  with PIL (`images.decode_rgb`), like `datasets.load_arrays`.

Each record is {"encoded": bytes, "label": int, "id": int, "path": str}; after `decode_record`,
{"image": uint8[h, w, 3], "label", "id", "path", "ok": bool}: an unreadable file gives ok=False
and a zero image (the pipeline never stops on a bad file; the caller skips and lists it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

from absl import logging
import grain
import numpy as np

from cbir_jax.data import images as images_lib


class ImageFolderSource(grain.sources.RandomAccessDataSource):
  """The image files under `root`, in (class, relative path) order (see the module docstring).

  Args:
    root: a folder with one sub-folder per class, or with the images directly in it (then one
      class named after the folder). Hidden files and folders are ignored.

  Raises:
    FileNotFoundError: `root` is not a folder. ValueError: it holds no image file.
  """

  def __init__(self, root: str | os.PathLike):
    from cbir_jax.data.builders import image_examples, image_folder  # pylint: disable=g-import-not-at-top
    self.root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(self.root):
      raise FileNotFoundError(f"image folder {self.root!r} does not exist or is not a folder")
    classes = image_examples.list_class_folders(self.root)
    if classes:
      self.class_names = list(classes)
      files = image_folder.folder_files(self.root, tuple(classes))
      self._paths = [f.relpath for f in files]
      self._labels = np.asarray([f.label for f in files], np.int32)
    else:
      self.class_names = [os.path.basename(self.root) or "images"]
      self._paths = image_examples.list_images(self.root)
      self._labels = np.zeros(len(self._paths), np.int32)
    if not self._paths:
      raise ValueError(f"no image files in {self.root!r} (extensions "
                       f"{', '.join(images_lib.IMAGE_EXTENSIONS)})")

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self._paths[index]
    try:
      with open(os.path.join(self.root, path), "rb") as f:
        encoded = f.read()
    except OSError as e:
      logging.warning("cannot read %s: %s", path, e)
      encoded = b""
    return {"encoded": encoded, "label": int(self._labels[index]), "id": int(index),
            "path": path}

  def fingerprint(self) -> dict[str, Any]:
    """What identifies the listing (a resumed build refuses another one): root, count, ends."""
    return {"kind": "folder", "root": self.root, "count": len(self),
            "first": self._paths[0], "last": self._paths[-1]}

  def __repr__(self) -> str:
    return f"ImageFolderSource({self.root!r}, {len(self)} files)"


class TfdsSource(grain.sources.RandomAccessDataSource):
  """One split of a tfds data set prepared as ArrayRecord, images left encoded.

  Args:
    builder: a tfds builder (`tfds.builder(name, data_dir=...)` or one of ours), prepared with
      `file_format="array_record"`, or a registered tfds name (then `data_dir` is used; the
      project's builders, e.g. "corel1k", are registered by `cbir_jax.data.builders`).
    split: the split to read, e.g. "train".
    data_dir: tfds data_dir when `builder` is a name.

  Raises:
    ValueError: the data set is not prepared, or not as ArrayRecord (names the format to use).
  """

  def __init__(self, builder: Any, split: str, *, data_dir: str | None = None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    if isinstance(builder, str):
      import cbir_jax.data.builders  # pylint: disable=g-import-not-at-top,unused-import  # Our names.
      builder = tfds.builder(builder, data_dir=data_dir)
    if not builder.is_prepared():
      raise ValueError(f"tfds data set {builder.name} is not prepared in {builder.data_dir}; "
                       "prepare it with download_and_prepare(file_format='array_record')")
    formats = [str(getattr(f, "value", f)) for f in
               (builder.info.file_format, *getattr(builder.info, "alternative_file_formats", ()))]
    if "array_record" not in formats:
      raise ValueError(f"tfds data set {builder.name} in {builder.data_dir} is stored as "
                       f"{formats}; random access needs file_format='array_record' "
                       "(rebuild it with tfds.builder(..., file_format='array_record'))")
    if split not in builder.info.splits:
      raise ValueError(f"tfds data set {builder.name} has no split {split!r}; splits: "
                       f"{sorted(builder.info.splits)}")
    self.builder, self.split = builder, split
    self._source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()},
                                          file_format="array_record")
    features = builder.info.features
    label = features["label"] if "label" in features else None
    self.class_names = list(label.names) if label is not None and hasattr(label, "names") else []

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self._source[index]
    return {"encoded": bytes(example["image"]), "label": int(example.get("label", 0)),
            "id": int(example.get("id", index)),
            "path": _text(example.get("path", f"{self.split}[{index}]"))}

  def fingerprint(self) -> dict[str, Any]:
    """What identifies the data (name, version, split, count)."""
    return {"kind": "tfds", "name": self.builder.name, "version": str(self.builder.version),
            "data_dir": str(self.builder.data_dir), "split": self.split, "count": len(self)}

  def __repr__(self) -> str:
    return f"TfdsSource({self.builder.name}/{self.split}, {len(self)} records)"


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def decode_rgb_resized(data: bytes, shape: Sequence[int]) -> np.ndarray:
  """Encoded image bytes -> uint8[h, w, 3] resized to shape (h, w[, 3]) (`images.resize`)."""
  if not data:
    raise ValueError("empty file (0 bytes)")
  return images_lib.resize(images_lib.decode_rgb(data), (int(shape[0]), int(shape[1])))


@dataclasses.dataclass(frozen=True)
class DecodeRecord(grain.transforms.Map):
  """grain map: a source record -> {"image": uint8[h, w, c], "label", "id", "path", "ok"}.

  `decode(bytes, shape)` makes the image (default `decode_rgb_resized`; the index build passes
  `query.decode_image`, so the database is decoded exactly like a query photo). An unreadable
  image gives ok=False and zeros of `shape` (logged, never raised).
  """
  shape: tuple[int, int, int]
  decode: Callable[[bytes, Sequence[int]], np.ndarray] = decode_rgb_resized

  def map(self, record: dict[str, Any]) -> dict[str, Any]:
    try:
      image, ok = self.decode(record["encoded"], self.shape), True
      if image.shape != tuple(self.shape):
        raise ValueError(f"decoded to shape {image.shape}, expected {tuple(self.shape)}")
    # PIL raises many types on malformed files: any failure skips that file, never the build.
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("skipping unreadable image %s: %s: %s", record["path"], type(e).__name__,
                      e)
      image, ok = np.zeros(self.shape, np.uint8), False
    return {"image": image, "label": np.int32(record["label"]), "id": np.int64(record["id"]),
            "path": record["path"], "ok": ok}


def decoded_batches(source: grain.sources.RandomAccessDataSource, positions: Sequence[int],
                    *, image_shape: tuple[int, int, int], batch_size: int,
                    decode: Callable[[bytes, Sequence[int]], np.ndarray] = decode_rgb_resized,
                    num_threads: int = 4, prefetch: int | None = None) -> grain.DatasetIterator:
  """Batches of the records at `positions` (in that order), decoded and resized by grain threads.

  Args:
    source: a random-access source whose records follow the module's record format.
    positions: int[m] record positions.
    image_shape: (height, width, channels) of every output image.
    batch_size: records per batch (the last one may be short).
    decode: bytes, image_shape -> uint8[image_shape] (see `DecodeRecord`).
    num_threads: grain read threads (decoding runs in them; PIL releases the GIL).
    prefetch: decoded records buffered ahead (default 2 * batch_size): with the batch being
      built and one in use, the memory bound is about (prefetch + 2 * batch_size) images.

  Returns:
    An iterator of {"image": uint8[b, h, w, c], "label": int32[b], "id": int64[b],
    "path": str[b] (object array), "ok": bool[b]}.
  """
  positions = np.asarray(positions, np.int64)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if num_threads < 1:
    raise ValueError(f"num_threads must be >= 1, got {num_threads}")
  dataset = grain.MapDataset.range(len(positions)).map(lambda j: source[int(positions[j])])
  dataset = dataset.map(DecodeRecord(tuple(int(s) for s in image_shape), decode))
  options = grain.ReadOptions(num_threads=num_threads,
                              prefetch_buffer_size=prefetch or 2 * batch_size)
  return iter(dataset.to_iter_dataset(options).batch(batch_size, batch_fn=_stack))


def _stack(records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
  return {"image": np.stack([r["image"] for r in records]),
          "label": np.asarray([r["label"] for r in records], np.int32),
          "id": np.asarray([r["id"] for r in records], np.int64),
          "path": np.asarray([r["path"] for r in records], object),
          "ok": np.asarray([r["ok"] for r in records], bool)}
