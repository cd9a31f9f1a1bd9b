"""CIFAR-10 packed into one binary file and one index, read back without TensorFlow or tfds.

What it is for: a machine that gets only the repository and a few carried files (a GPU lent for
minutes, no tensorflow there) still trains on exactly the pixels the tfds path gives here. The
packed folder holds two files:

  images.bin   every image's encoded bytes, concatenated, the shared JPEG header of each image
               stored once: an image's bytes are `headers[h] + images.bin[offset[i]:offset[i+1]]`
               (h = header[i]; -1 = no shared header, the whole file is in images.bin)
  index.npz    format_version, class_names, split_names, sha256 (of images.bin), and per image:
               split (index into split_names), label, id, header, plus offset int64[n + 1]
               and the header table (header_bytes uint8, header_offset int64[h + 1])

A JPEG's "header" is everything up to and including its start-of-scan segment (quantisation and
Huffman tables, frame size); the CIFAR-10 JPEGs of ../shared/datasets share one 623-byte header
and keep about 300 bytes of scan data each, so all 60,000 pack into about 18 MB instead of the
55 MB of the files. The bytes an image decodes from are exactly the bytes the tfds builder stores
(`images.load_for_tfds`: an 8-bit RGB JPEG as is, anything else as lossless PNG of its RGB
pixels), so `load_packed` equals `datasets.load_arrays("cifar10_local", ...)` pixel for pixel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
from typing import Iterable, Sequence

from absl import logging
import numpy as np
from PIL import Image

from cbir_jax import atomic
from cbir_jax.data import datasets
from cbir_jax.data import images as images_lib

DATA_FILE = "images.bin"
INDEX_FILE = "index.npz"
FORMAT_VERSION = 1
MIB = 1 << 20
# What one device call carries at most: the working tree plus carried paths (device README).
TRAVEL_BUDGET_BYTES = 64 * MIB
CIFAR10_SPLITS = ("train", "test")
_SOI, _SOS = b"\xff\xd8", 0xDA


@dataclasses.dataclass(frozen=True)
class PackedExample:
  """One image to pack: `data` (encoded bytes that `images.decode_rgb` reads), label, id, split."""
  data: bytes
  label: int
  id: int
  split: str


@dataclasses.dataclass(frozen=True)
class PackSummary:
  """What `pack` wrote (or, with `dry_run`, would write): sizes in bytes and counts."""
  folder: str
  data_bytes: int
  index_bytes: int
  other_bytes: int
  budget_bytes: int
  counts: dict[str, int]
  headers: int
  source_bytes: int

  @property
  def total_bytes(self) -> int:
    """The packed files plus everything else that travels with them."""
    return self.data_bytes + self.index_bytes + self.other_bytes


def split_jpeg_header(data: bytes) -> tuple[bytes, bytes]:
  """Splits a JPEG into (header, scan): header = the bytes up to and including the first
  start-of-scan (SOS) segment, scan = the rest. Non-JPEG or malformed bytes: (b"", data).

  `header + scan == data` always holds, so no pixel can change.
  """
  if not data.startswith(_SOI):
    return b"", data
  pos = 2
  while pos + 4 <= len(data):
    if data[pos] != 0xFF:
      return b"", data
    marker = data[pos + 1]
    if marker == 0xFF:  # fill byte
      pos += 1
      continue
    length = int.from_bytes(data[pos + 2:pos + 4], "big")
    end = pos + 2 + length
    if length < 2 or end > len(data):
      return b"", data
    if marker == _SOS:
      return data[:end], data[end:]
    pos = end
  return b"", data


def _encoded(image: bytes | np.ndarray) -> bytes:
  """What `images.load_for_tfds` returned, as bytes: the JPEG itself, or a lossless PNG."""
  if isinstance(image, bytes):
    return image
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


def collect_cifar10(manual_dir: str | os.PathLike,
                    splits: Sequence[str] = CIFAR10_SPLITS) -> list[PackedExample]:
  """The examples of `splits` of a CIFAR-10 JPEG folder, exactly as the cifar10_local builder
  reads them (same files, ids, labels, skipped unreadable files; needs tfds, as that builder
  does). `manual_dir` holds train_jpeg/ and test_batch_jpeg/ (+ test_batch_index.csv), e.g.
  ../shared/datasets/cifar10.

  Raises:
    FileNotFoundError: manual_dir missing or without the JPEG layout.
    ValueError: an unknown split, or a split with no readable image.
  """
  from cbir_jax.data.builders import cifar10_local  # pylint: disable=g-import-not-at-top
  from cbir_jax.data.builders import image_examples  # pylint: disable=g-import-not-at-top

  root = os.path.abspath(os.fspath(manual_dir))
  if cifar10_local.detect_layout(root) != "jpeg":
    raise FileNotFoundError(f"{root} holds the python layout; the packer reads "
                            f"{cifar10_local.JPEG_CONTENTS}")
  folders = {"train": cifar10_local.WHOLE_TRAIN, "test": cifar10_local.TEST_BATCH}
  examples = []
  for split in splits:
    if split not in folders:
      raise ValueError(f"cannot pack split {split!r}; valid splits: {', '.join(folders)}")
    if not os.path.isdir(os.path.join(root, f"{folders[split]}_jpeg")):
      raise FileNotFoundError(f"{root} has no {folders[split]}_jpeg/ folder for split {split!r}")
    files = cifar10_local.jpeg_files(root, folders[split])
    for _, ex in image_examples.generate_examples(files, split=split, shape=(32, 32, 3)):
      examples.append(PackedExample(_encoded(ex["image"]), int(ex["label"]), int(ex["id"]),
                                    split))
  return examples


def _index_bytes(arrays: dict[str, np.ndarray]) -> bytes:
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  return buffer.getvalue()


def pack(examples: Iterable[PackedExample], folder: str | os.PathLike, *,
         class_names: Sequence[str], split_names: Sequence[str] = CIFAR10_SPLITS,
         budget_bytes: int = TRAVEL_BUDGET_BYTES, other_bytes: int = 0,
         dry_run: bool = False) -> PackSummary:
  """Packs `examples` into `folder`/images.bin + index.npz (both written atomically).

  Everything is assembled in memory first; if the two files plus `other_bytes` (what else
  travels with them: the repository, carried wheels) exceed `budget_bytes`, a ValueError naming
  the sizes is raised and nothing is written. Within a split, examples are stored in id order.

  Args:
    examples: the images; ids unique within a split, labels in [0, len(class_names)).
    folder: the output folder (created).
    class_names: label names, index = label.
    split_names: the splits `examples` may name.
    budget_bytes: the limit for packed files + `other_bytes`.
    other_bytes: bytes that travel beside the packed files.
    dry_run: check and size everything, write nothing.

  Returns:
    A PackSummary.

  Raises:
    ValueError: over budget, an unknown split or label, duplicate ids, no examples.
  """
  examples = list(examples)
  if not examples:
    raise ValueError("no examples to pack")
  splits = list(split_names)
  for ex in examples:
    if ex.split not in splits:
      raise ValueError(f"example id {ex.id} has split {ex.split!r}; valid: {splits}")
    if not 0 <= ex.label < len(class_names):
      raise ValueError(f"example id {ex.id} has label {ex.label}, outside [0, "
                       f"{len(class_names)})")
  examples.sort(key=lambda ex: (splits.index(ex.split), ex.id))
  keys = [(ex.split, ex.id) for ex in examples]
  if len(set(keys)) != len(keys):
    raise ValueError("duplicate (split, id) pairs among the examples")
  header_of, scans = zip(*(split_jpeg_header(ex.data) for ex in examples))
  counts_by_header: dict[bytes, int] = {}
  for header in header_of:
    counts_by_header[header] = counts_by_header.get(header, 0) + 1
  # A header used by one image alone saves nothing: that image is stored whole.
  shared = [h for h, c in counts_by_header.items() if h and c > 1]
  header_ids = {h: i for i, h in enumerate(shared)}
  pieces, header_index = [], []
  for header, scan in zip(header_of, scans):
    if header in header_ids:
      pieces.append(scan)
      header_index.append(header_ids[header])
    else:
      pieces.append(header + scan)
      header_index.append(-1)
  data = b"".join(pieces)
  offsets = np.zeros(len(pieces) + 1, np.int64)
  np.cumsum([len(p) for p in pieces], out=offsets[1:])
  header_offsets = np.zeros(len(shared) + 1, np.int64)
  np.cumsum([len(h) for h in shared], out=header_offsets[1:])
  arrays = {
      "format_version": np.int64(FORMAT_VERSION),
      "class_names": np.asarray(list(class_names), dtype=str),
      "split_names": np.asarray(splits, dtype=str),
      "sha256": np.asarray(hashlib.sha256(data).hexdigest()),
      "split": np.asarray([splits.index(ex.split) for ex in examples], np.uint8),
      "label": np.asarray([ex.label for ex in examples], np.int32),
      "id": np.asarray([ex.id for ex in examples], np.int64),
      "header": np.asarray(header_index, np.int32),
      "offset": offsets,
      "header_bytes": np.frombuffer(b"".join(shared), np.uint8),
      "header_offset": header_offsets,
  }
  index = _index_bytes(arrays)
  summary = PackSummary(os.path.abspath(os.fspath(folder)), len(data), len(index),
                        int(other_bytes), int(budget_bytes),
                        {s: int(np.sum(arrays["split"] == i)) for i, s in enumerate(splits)},
                        len(shared), sum(len(ex.data) for ex in examples))
  if summary.total_bytes > budget_bytes:
    raise ValueError(
        f"packed data ({summary.data_bytes / MIB:.2f} MiB + index {summary.index_bytes / MIB:.2f}"
        f" MiB) plus {summary.other_bytes / MIB:.2f} MiB that travels with it is "
        f"{summary.total_bytes / MIB:.2f} MiB, over the budget of {budget_bytes / MIB:.2f} MiB; "
        "nothing was written")
  if not dry_run:
    with atomic.atomic_write(os.path.join(summary.folder, DATA_FILE), "wb") as f:
      f.write(data)
    with atomic.atomic_write(os.path.join(summary.folder, INDEX_FILE), "wb") as f:
      f.write(index)
  return summary


def _read_index(folder: str) -> dict[str, np.ndarray]:
  path = os.path.join(folder, INDEX_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no packed data set in {folder!r}: {INDEX_FILE} is missing (make "
                            "it with bin/pack_dataset.py)")
  with np.load(path, allow_pickle=False) as npz:
    index = {k: npz[k] for k in npz.files}
  version = int(index.get("format_version", -1))
  if version != FORMAT_VERSION:
    raise ValueError(f"{path} has packed format version {version}; this code reads "
                     f"{FORMAT_VERSION}")
  return index


def default_cache_dir() -> str:
  """Where decoded splits are cached when no cache_dir is given: <tmp>/cbir_jax_packed."""
  return os.path.join(tempfile.gettempdir(), "cbir_jax_packed")


def _decode(index: dict[str, np.ndarray], data: bytes, positions: np.ndarray,
            image_size: tuple[int, int] | None) -> list[np.ndarray]:
  header_bytes, header_offsets = index["header_bytes"].tobytes(), index["header_offset"]
  headers = [header_bytes[header_offsets[h]:header_offsets[h + 1]]
             for h in range(len(header_offsets) - 1)]
  offsets, images = index["offset"], []
  for i in positions:
    h = int(index["header"][i])
    image = images_lib.decode_rgb((headers[h] if h >= 0 else b"")
                                  + data[offsets[i]:offsets[i + 1]])
    images.append(image if image_size is None else images_lib.resize(image, image_size))
  return images


def load_packed(folder: str | os.PathLike, split: str,
                image_size: tuple[int, int] | None = None, *,
                cache_dir: str | os.PathLike | None = None) -> datasets.ImageArrays:
  """Reads one split of a packed folder (made by `pack`) into memory.

  Each image is decoded with `images.decode_rgb` (PIL), as `datasets.load_arrays` does on the
  tfds path, and resized with `images.resize` when `image_size` is given. The decoded split is
  cached as one .npy in `cache_dir` (default `default_cache_dir()`), named by images.bin's
  SHA-256, the split and the size and written atomically, so the next load of the same split
  reads it instead of decoding again (an experiment loads the training split about 18 times;
  the tfds path caches likewise in its prepared data set). A cache file of the wrong shape is
  ignored and rewritten.

  Args:
    folder: the folder holding images.bin and index.npz.
    split: one of the folder's split names (CIFAR-10: "train", "test").
    image_size: None (native size) or (h, w).
    cache_dir: folder for the decoded cache.

  Returns:
    ImageArrays: images uint8[n, h, w, 3], labels int32[n], ids int64[n] ascending.

  Raises:
    FileNotFoundError: folder or a file missing.
    ValueError: unknown split, another format version, or images.bin not the file the index
      was written for (size or SHA-256), naming the file.
  """
  folder = os.path.abspath(os.fspath(folder))
  index = _read_index(folder)
  split_names = [str(s) for s in index["split_names"]]
  if split not in split_names:
    raise ValueError(f"packed data set in {folder!r} has no split {split!r} (found "
                     f"{split_names})")
  data_path = os.path.join(folder, DATA_FILE)
  if not os.path.isfile(data_path):
    raise FileNotFoundError(f"packed data set in {folder!r} lacks {DATA_FILE}")
  with open(data_path, "rb") as f:
    data = f.read()
  offsets = index["offset"]
  if len(data) != int(offsets[-1]) or hashlib.sha256(data).hexdigest() != str(index["sha256"]):
    raise ValueError(f"{data_path} ({len(data)} bytes) is not the file {INDEX_FILE} was written "
                     f"for ({int(offsets[-1])} bytes, sha256 {str(index['sha256'])[:12]}...); "
                     "pack the data set again")
  positions = np.flatnonzero(index["split"] == split_names.index(split))
  if not positions.size:
    raise ValueError(f"packed split {split!r} in {folder!r} holds no images")
  ids = index["id"][positions]
  order = np.argsort(ids, kind="stable")
  size = "native" if image_size is None else f"{image_size[0]}x{image_size[1]}"
  cache = os.path.join(os.fspath(cache_dir or default_cache_dir()),
                       f"{str(index['sha256'])[:32]}_{split}_{size}.npy")
  images = None
  if os.path.isfile(cache):
    cached = np.load(cache, allow_pickle=False)
    if (cached.dtype == np.uint8 and cached.ndim == 4 and cached.shape[0] == positions.size
        and (image_size is None or cached.shape[1:3] == tuple(image_size))):
      images = cached
      logging.info("packed %s: %d images from the decoded cache %s", split, len(images), cache)
  if images is None:
    decoded = _decode(index, data, positions, image_size)
    shapes = sorted({image.shape for image in decoded})
    if len(shapes) > 1:
      raise ValueError(f"packed split {split!r} in {folder!r} has images of different sizes "
                       f"{shapes[:4]}; pass image_size=(h, w) to resize them")
    images = np.stack(decoded)[order]
    with atomic.atomic_write(cache, "wb") as f:
      np.save(f, images, allow_pickle=False)
    logging.info("packed %s: %d images decoded from %s (cached in %s)", split, len(images),
                 folder, cache)
  return datasets.ImageArrays(images, index["label"][positions][order], ids[order],
                              [str(c) for c in index["class_names"]])
