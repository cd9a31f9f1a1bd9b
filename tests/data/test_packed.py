"""The packed CIFAR-10 form (data.packed, "cifar10_packed") against the tfds cifar10_local path."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from cbir_jax.data import datasets, packed
from cbir_jax.data.builders import cifar10_local
from tests.data import conftest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = cifar10_local.CLASS_NAMES


def tiny_cifar_tree(root: pathlib.Path, per_class_train: int = 2,
                     per_class_test: int = 1) -> None:
  """A CIFAR-10 JPEG tree: train_jpeg/ and test_batch_jpeg/ + its index CSV, 32x32 images of
  several kinds (plain JPEGs at two qualities, so two shared headers; a greyscale JPEG and a
  PNG, which the builder stores decoded; a corrupt file and a wrong-size one, both skipped)."""
  seed = 0
  for class_name in CLASSES:
    for k in range(per_class_train):
      conftest.write_image(root / "train_jpeg" / class_name / f"{k:04d}.jpg", "rgb_jpg",
                           seed=seed, size=(32, 32))
      seed += 1
  low = conftest.pattern(99, 32, 32)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(low).save(root / "train_jpeg" / "cat" / "0100.jpg", "JPEG", quality=40)
  Image.fromarray(low[::-1]).save(root / "train_jpeg" / "dog" / "0100.jpg", "JPEG", quality=40)
  conftest.write_image(root / "train_jpeg" / "frog" / "0101.jpg", "gray_jpg", seed=7,
                       size=(32, 32))
  conftest.write_image(root / "train_jpeg" / "ship" / "0102.png", "rgb_png", seed=8,
                       size=(32, 32))
  conftest.write_image(root / "train_jpeg" / "ship" / "0103.jpg", "corrupt")
  conftest.write_image(root / "train_jpeg" / "truck" / "0104.jpg", "rgb_jpg", size=(20, 20))
  rows = []
  for c, class_name in enumerate(CLASSES):
    for k in range(per_class_test):
      rows.append((len(CLASSES) * k + (c * 7) % len(CLASSES), class_name, f"{k:04d}"))
  for row, class_name, stem in rows:
    conftest.write_image(root / "test_batch_jpeg" / class_name / f"{stem}.jpg", "rgb_jpg",
                         seed=100 + row, size=(32, 32))
  (root / "test_batch_index.csv").write_text("batch_index,label,label_name,jpeg_path\n" + "".join(
      f"{r},{CLASSES.index(c)},{c},test_batch_jpeg/{c}/{s}.jpg\n" for r, c, s in rows))


@pytest.fixture(name="packed_tree", scope="module")
def _packed_tree(tmp_path_factory):
  """(JPEG tree, packed folder, tfds data_dir (also the packed loader's cache), PackSummary)."""
  base = tmp_path_factory.mktemp("packed")
  root = base / "cifar10"
  tiny_cifar_tree(root)
  summary = packed.pack(packed.collect_cifar10(root), base / "packed", class_names=CLASSES)
  return root, base / "packed", base / "tfds", summary


def _assert_same(a: datasets.ImageArrays, b: datasets.ImageArrays) -> None:
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  np.testing.assert_array_equal(a.ids, b.ids)
  assert a.images.dtype == b.images.dtype == np.uint8
  assert a.labels.dtype == b.labels.dtype and a.ids.dtype == b.ids.dtype
  assert a.class_names == b.class_names


@pytest.mark.parametrize("split", ["train", "test"])
def test_packed_equals_tfds_loader_pixel_for_pixel(packed_tree, split):
  root, folder, data_dir, _ = packed_tree
  tfds_arrays = datasets.load_arrays("cifar10_local", split, manual_dir=root, data_dir=data_dir)
  cache = data_dir / f"cache_{split}"
  packed_arrays = datasets.load_arrays("cifar10_packed", split, manual_dir=folder,
                                       data_dir=cache)
  _assert_same(packed_arrays, tfds_arrays)
  assert len(packed_arrays) == (24 if split == "train" else 10)  # 2 of 26 train files skipped
  resized = datasets.load_arrays("cifar10_packed", split, manual_dir=folder, data_dir=cache,
                                 image_size=(20, 24))
  _assert_same(resized, datasets.load_arrays("cifar10_local", split, manual_dir=root,
                                             data_dir=data_dir, image_size=(20, 24)))


def test_load_split_with_validation_carve_matches(packed_tree):
  root, folder, data_dir, _ = packed_tree
  config = {"name": "cifar10_packed", "manual_dir": str(folder), "image_size": 32,
            "validation_fraction": 0.25, "data_dir": str(data_dir / "cache_split")}
  local = dict(config, name="cifar10_local", manual_dir=str(root), data_dir=str(data_dir))
  for split in ("train", "validation", "test"):
    _assert_same(datasets.load_split(config, split, seed=3),
                 datasets.load_split(local, split, seed=3))


def test_decoded_split_is_cached_and_a_bad_cache_ignored(packed_tree, tmp_path):
  _, folder, _, _ = packed_tree
  first = packed.load_packed(folder, "test", cache_dir=tmp_path)
  (cache,) = tmp_path.glob("*_test_native.npy")
  marked = first.images.copy()
  marked[0, 0, 0] = 255 - marked[0, 0, 0]
  np.save(cache, marked)  # the next load reads the cache, not the JPEGs
  np.testing.assert_array_equal(packed.load_packed(folder, "test", cache_dir=tmp_path).images,
                                marked)
  np.save(cache, marked[:3])  # wrong shape: decoded again and rewritten
  _assert_same(packed.load_packed(folder, "test", cache_dir=tmp_path), first)
  assert np.load(cache).shape == first.images.shape


def test_shared_headers_are_stored_once(packed_tree):
  _, folder, _, summary = packed_tree
  assert summary.counts == {"train": 24, "test": 10}
  assert summary.headers == 2  # quality 95 and quality 40
  assert summary.data_bytes + 2 * 500 < summary.source_bytes
  assert summary.data_bytes == os.path.getsize(folder / packed.DATA_FILE)


def test_split_jpeg_header_keeps_every_byte(tmp_path):
  conftest.write_image(tmp_path / "a.jpg", "rgb_jpg", size=(32, 32))
  data = (tmp_path / "a.jpg").read_bytes()
  header, scan = packed.split_jpeg_header(data)
  assert header + scan == data
  assert header.startswith(b"\xff\xd8") and header[header.rindex(b"\xff\xda"):][:2] == b"\xff\xda"
  assert scan.endswith(b"\xff\xd9")
  assert packed.split_jpeg_header(b"\x89PNG...") == (b"", b"\x89PNG...")
  assert packed.split_jpeg_header(data[:30]) == (b"", data[:30])  # truncated before SOS


def test_over_budget_raises_and_writes_nothing(packed_tree, tmp_path):
  root, _, _, summary = packed_tree
  examples = packed.collect_cifar10(root)
  with pytest.raises(ValueError, match=r"over the budget of 0\.01 MiB; nothing was written"):
    packed.pack(examples, tmp_path / "out", class_names=CLASSES, budget_bytes=packed.MIB // 100)
  with pytest.raises(ValueError, match="plus 64.00 MiB that travels with it"):
    packed.pack(examples, tmp_path / "out", class_names=CLASSES,
                other_bytes=packed.TRAVEL_BUDGET_BYTES)
  assert not (tmp_path / "out").exists()
  exact = summary.data_bytes + summary.index_bytes
  assert packed.pack(examples, tmp_path / "dry", class_names=CLASSES, budget_bytes=exact,
                     dry_run=True).total_bytes == exact
  assert not (tmp_path / "dry").exists()


def test_bad_inputs_are_named(packed_tree, tmp_path):
  root, folder, _, _ = packed_tree
  with pytest.raises(ValueError, match="has no split 'train_batches'"):
    packed.load_packed(folder, "train_batches")
  with pytest.raises(ValueError, match="unknown split 'train_batches' for cifar10_packed"):
    datasets.load_arrays("cifar10_packed", "train_batches", manual_dir=folder)
  with pytest.raises(FileNotFoundError, match="index.npz is missing"):
    packed.load_packed(tmp_path, "train")
  with pytest.raises(FileNotFoundError, match="needs manual_dir"):
    datasets.load_arrays("cifar10_packed", "train")
  with pytest.raises(ValueError, match="cannot pack split 'validation'"):
    packed.collect_cifar10(root, ["validation"])
  example = packed.PackedExample(b"x", 10, 0, "train")
  with pytest.raises(ValueError, match="label 10, outside"):
    packed.pack([example], tmp_path / "o", class_names=CLASSES)
  with pytest.raises(ValueError, match="split 'extra'"):
    packed.pack([packed.PackedExample(b"x", 1, 0, "extra")], tmp_path / "o", class_names=CLASSES)
  with pytest.raises(ValueError, match="duplicate"):
    packed.pack([packed.PackedExample(b"x", 1, 0, "train")] * 2, tmp_path / "o",
                class_names=CLASSES)


def test_a_changed_data_file_is_refused(packed_tree, tmp_path):
  _, folder, _, _ = packed_tree
  copy = tmp_path / "copy"
  copy.mkdir()
  (copy / packed.INDEX_FILE).write_bytes((folder / packed.INDEX_FILE).read_bytes())
  data = bytearray((folder / packed.DATA_FILE).read_bytes())
  data[len(data) // 2] ^= 0xFF
  (copy / packed.DATA_FILE).write_bytes(bytes(data))
  with pytest.raises(ValueError, match="images.bin .* is not the file index.npz was written for"):
    packed.load_packed(copy, "test", cache_dir=tmp_path)


NO_TF = ("import sys\n"
          "for name in ('tensorflow', 'tensorflow_datasets', 'tensorflow.compat'):\n"
          "  sys.modules[name] = None\n")


@pytest.mark.slow
def test_packed_path_never_imports_tensorflow(packed_tree):
  """With tensorflow and tfds made unimportable (as on the GPU machine), load_split reads the
  packed data; the same call for cifar10_local fails on the missing tfds."""
  _, folder, _, _ = packed_tree
  code = NO_TF + (
      "from cbir_jax.data import datasets\n"
      f"config = {{'name': 'cifar10_packed', 'manual_dir': {str(folder)!r}, 'image_size': 32,"
      f" 'data_dir': {str(folder / 'cache')!r}}}\n"
      "a = datasets.load_split(config, 'test', seed=0)\n"
      "assert 'tensorflow' not in [m for m, v in sys.modules.items() if v is not None]\n"
      "print(len(a), a.images.shape)\n"
      "try:\n"
      "  datasets.load_arrays('cifar10_local', 'test', manual_dir='/nonexistent')\n"
      "except ImportError as e:\n"
      "  print('tfds blocked:', e)\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120, check=True).stdout
  assert "10 (10, 32, 32, 3)" in out
  assert "tfds blocked" in out
