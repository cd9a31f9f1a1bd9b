"""Builders on the real data in ../shared/datasets (skipped with the reason when it is absent).

Each real set is prepared once per session into a temporary data_dir (~12 s each on 2 cores).
"""

import csv

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from cbir_jax.data import datasets
from cbir_jax.data import images
from cbir_jax.data.builders import cifar10_local
from cbir_jax.data.builders import corel1k

pytestmark = pytest.mark.data


def _require(path):
  if not path.is_dir():
    pytest.skip(f"real data not found at {path} (set CBIR_SHARED_DATASETS to its folder)")
  return path


@pytest.fixture(scope="session")
def corel_real(shared_dir, tmp_path_factory):
  root = _require(shared_dir / "corel1k")
  data_dir = tmp_path_factory.mktemp("corel1k_real")
  arrays = datasets.load_arrays("corel1k", "all", manual_dir=root, data_dir=data_dir,
                                image_size=(48, 64))
  return root, data_dir, arrays


def test_corel1k_real_all(corel_real):
  root, data_dir, arrays = corel_real
  assert arrays.images.shape == (1000, 48, 64, 3)
  np.testing.assert_array_equal(arrays.ids, np.arange(1000))
  np.testing.assert_array_equal(arrays.labels, arrays.ids // 100)  # the Corel-1K convention
  assert arrays.class_names[9] == "food" and arrays.class_names[4] == "dinosaurs"
  with open(root / "labels.csv", newline="") as f:
    names = {int(r["id"]): r["label_name"] for r in csv.DictReader(f)}
  assert all(arrays.class_names[label] == names[i] for i, label in zip(arrays.ids, arrays.labels))
  builder = corel1k.Corel1k(data_dir=data_dir)
  assert builder.info.splits["train"].num_examples == 1000
  assert builder.info.metadata["skipped"] == []


def test_corel1k_real_native_sizes_and_pixels(corel_real):
  root, data_dir, arrays = corel_real
  builder = corel1k.Corel1k(data_dir=data_dir)
  shapes = {}
  for example in tfds.as_numpy(builder.as_dataset(split="train")):
    shapes[int(example["id"])] = example["image"].shape
    if int(example["id"]) in (0, 437, 912):  # the original JPEG bytes are stored unchanged
      path = root / example["path"].decode()
      assert example["image"].shape == np.asarray(Image.open(path)).shape
  # load_arrays decodes with PIL: the pixels equal PIL's decode + images.resize of the file.
  for image_id in (0, 437, 912):
    label = arrays.class_names[image_id // 100]
    reference = images.decode_rgb((root / label / f"{image_id}.jpg").read_bytes())
    np.testing.assert_array_equal(arrays.images[image_id], images.resize(reference, (48, 64)))
  assert len(shapes) == 1000
  assert sum(s == (256, 384, 3) for s in shapes.values()) == 800
  assert sum(s == (384, 256, 3) for s in shapes.values()) == 200


def test_corel1k_real_database_query(corel_real):
  root, data_dir, _ = corel_real
  query = datasets.load_arrays("corel1k", "query", manual_dir=root, data_dir=data_dir,
                               image_size=8, seed=0)
  database = datasets.load_arrays("corel1k", "database", manual_dir=root, data_dir=data_dir,
                                  image_size=8, seed=0)
  assert np.bincount(query.labels).tolist() == [50] * 10
  assert np.bincount(database.labels).tolist() == [50] * 10
  np.testing.assert_array_equal(np.sort(np.concatenate([query.ids, database.ids])),
                                np.arange(1000))


@pytest.fixture(scope="session")
def cifar_real(shared_dir, tmp_path_factory):
  root = _require(shared_dir / "cifar10")
  data_dir = tmp_path_factory.mktemp("cifar10_real")
  return root, {split: datasets.load_arrays("cifar10_local", split, manual_dir=root,
                                            data_dir=data_dir)
                for split in ("train", "train_batches", "test")}


@pytest.mark.parametrize("split,batch", [("test", "test_batch"), ("train_batches", "data_batch_1")])
def test_cifar10_real_jpeg_layout(cifar_real, split, batch):
  root, arrays = cifar_real
  arrays = arrays[split]
  with open(root / f"{batch}_index.csv", newline="") as f:
    n_rows = sum(1 for _ in csv.DictReader(f))
  assert arrays.images.shape == (n_rows, 32, 32, 3) == (10000, 32, 32, 3)
  np.testing.assert_array_equal(arrays.ids, np.arange(10000))  # ids = official batch rows
  exact = np.load(root / f"{batch}_first1017.npz")
  np.testing.assert_array_equal(arrays.labels, exact["labels"])  # the official label list
  official = exact["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(int)
  diff = np.abs(arrays.images[:1017].astype(int) - official).mean(axis=(1, 2, 3))
  assert diff.max() < 20 and diff.mean() < 8  # lossy JPEG (~5.8 / 255), a wrong pairing ~64
  shifted = np.abs(arrays.images[1:1017].astype(int) - official[:-1]).mean(axis=(1, 2, 3))
  assert shifted.mean() > 30
  assert arrays.class_names == list(cifar10_local.CLASS_NAMES)
  if split == "train_batches":  # counts of data_batch_1 given in the README
    assert np.bincount(arrays.labels).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001,
                                                   1025, 981]


def test_cifar10_real_whole_train_folder(cifar_real):
  """train_jpeg/ is all 50,000 training images; its first files per class are data_batch_1."""
  _, arrays = cifar_real
  train, batch1 = arrays["train"], arrays["train_batches"]
  assert train.images.shape == (50000, 32, 32, 3)
  assert np.bincount(train.labels).tolist() == [5000] * 10
  np.testing.assert_array_equal(train.ids, np.arange(50000))  # class * 5000 + rank in class
  np.testing.assert_array_equal(train.labels, np.repeat(np.arange(10), 5000))
  # data_batch_1's row r (official order) is the rank-th image of its class in train_jpeg/.
  rank = np.array([np.sum(batch1.labels[:r] == c) for r, c in enumerate(batch1.labels)])
  np.testing.assert_array_equal(train.images[batch1.labels * 5000 + rank], batch1.images)
