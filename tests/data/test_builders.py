"""tfds builders on tiny generated folders: conversions, skipped files, ids, labels, errors."""

import logging as std_logging
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cbir_jax.data import datasets
from cbir_jax.data.builders import caltech256
from cbir_jax.data.builders import cifar10_local
from cbir_jax.data.builders import corel1k
from cbir_jax.data.builders import image_folder
from tests.data import conftest

# Corel-like tiny folder: (relative path, kind); 900.jpg and 101.jpg are unreadable.
_COREL = [("africans/0.jpg", "rgb_jpg"), ("africans/1.png", "rgb_png"),
          ("africans/2.jpg", "cmyk_jpg"), ("beaches/100.png", "gray16_png"),
          ("beaches/101.jpg", "truncated"), ("beaches/102.gif", "palette_gif"),
          ("food/900.jpg", "corrupt"), ("food/901.png", "rgba_png"), ("food/902.jpg", "gray_jpg")]


@pytest.fixture(scope="module")
def corel_tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("corel_manual")
  expected = {}
  for i, (rel, kind) in enumerate(_COREL):
    expected[rel] = conftest.write_image(root / rel, kind, seed=i)
  (root / "africans" / "notes.txt").write_text("not an image")
  return root, expected


@pytest.fixture(scope="module")
def corel_tiny_arrays(corel_tiny, tmp_path_factory):
  root, _ = corel_tiny
  data_dir = tmp_path_factory.mktemp("corel_data")
  return datasets.load_arrays("corel1k", "all", manual_dir=root, data_dir=data_dir), data_dir


def test_corel_tiny_converts_skips_and_labels(corel_tiny, corel_tiny_arrays):
  root, expected = corel_tiny
  arrays, data_dir = corel_tiny_arrays
  np.testing.assert_array_equal(arrays.ids, [0, 1, 2, 100, 102, 901, 902])
  np.testing.assert_array_equal(arrays.labels, [0, 0, 0, 1, 1, 9, 9])
  assert arrays.images.shape == (7, 16, 16, 3) and arrays.images.dtype == np.uint8
  assert arrays.class_names == list(corel1k.CLASS_NAMES)
  by_id = dict(zip(arrays.ids.tolist(), arrays.images))
  for image_id, rel in [(1, "africans/1.png"), (100, "beaches/100.png"), (901, "food/901.png")]:
    np.testing.assert_array_equal(by_id[image_id], expected[rel])  # PNG: exact pixels
  for image_id, rel in [(0, "africans/0.jpg"), (2, "africans/2.jpg"), (902, "food/902.jpg")]:
    assert np.abs(by_id[image_id].astype(int) - expected[rel]).mean() < 6
  builder = corel1k.Corel1k(data_dir=data_dir)
  assert sorted(builder.info.metadata["skipped"]) == ["beaches/101.jpg", "food/900.jpg"]
  assert builder.info.metadata["manual_dir"] == str(root)


def test_corel_through_tfds_by_name(corel_tiny, corel_tiny_arrays):
  root, _ = corel_tiny
  _, data_dir = corel_tiny_arrays
  builder = tfds.builder("corel1k", data_dir=data_dir)  # registered by importing the builders
  assert isinstance(builder, corel1k.Corel1k)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  dataset = tfds.as_numpy(builder.as_dataset(split="train", as_supervised=True))
  assert sorted(int(label) for _, label in dataset) == [0, 0, 0, 1, 1, 9, 9]


def test_corel_skips_are_logged_by_path(tmp_path, caplog):
  root = tmp_path / "m"
  conftest.write_image(root / "buses" / "300.jpg", "rgb_jpg")
  conftest.write_image(root / "buses" / "301.jpg", "corrupt")
  with caplog.at_level(std_logging.INFO):
    arrays = datasets.load_arrays("corel1k", "all", manual_dir=root, data_dir=tmp_path / "d")
  np.testing.assert_array_equal(arrays.ids, [300])
  assert str(root / "buses" / "301.jpg") in caplog.text
  assert "skipped 1 unreadable" in caplog.text


def test_corel_database_query_split(corel_tiny, corel_tiny_arrays):
  root, _ = corel_tiny
  _, data_dir = corel_tiny_arrays
  database = datasets.load_arrays("corel1k", "database", manual_dir=root, data_dir=data_dir,
                                  seed=1)
  query = datasets.load_arrays("corel1k", "query", manual_dir=root, data_dir=data_dir, seed=1)
  assert len(database) + len(query) == 7 and not set(database.ids) & set(query.ids)
  assert set(query.labels.tolist()) == {0, 1, 9}  # every class with >= 2 images is queried


def test_corel_native_sizes_need_image_size(tmp_path):
  root = tmp_path / "m"
  conftest.write_image(root / "horses" / "700.jpg", "rgb_jpg", size=(16, 24))
  conftest.write_image(root / "horses" / "701.jpg", "rgb_jpg", size=(24, 16))
  with pytest.raises(ValueError, match="image_size"):
    datasets.load_arrays("corel1k", "all", manual_dir=root, data_dir=tmp_path / "d")
  arrays = datasets.load_arrays("corel1k", "all", manual_dir=root, data_dir=tmp_path / "d",
                                image_size=(8, 12))
  assert arrays.images.shape == (2, 8, 12, 3)


def test_corel_rebuilds_when_manual_dir_changes(tmp_path):
  for i, folder in enumerate(["a", "b"]):
    conftest.write_image(tmp_path / folder / "flowers" / f"{600 + i}.png", "rgb_png")
    arrays = datasets.load_arrays("corel1k", "all", manual_dir=tmp_path / folder,
                                  data_dir=tmp_path / "d")
    np.testing.assert_array_equal(arrays.ids, [600 + i])


def test_corel_file_layouts(tmp_path):
  flat = tmp_path / "flat"
  for image_id in (5, 250, 999):
    conftest.write_image(flat / f"{image_id}.jpg", "rgb_jpg")
  files = corel1k.corel_files(str(flat))
  assert [(f.id, f.label) for f in files] == [(5, 0), (250, 2), (999, 9)]
  (flat / "labels.csv").write_text("id,label,label_name,path\n5,3,buses,5.jpg\n")
  files = corel1k.corel_files(str(flat))
  assert [(f.id, f.label, f.relpath) for f in files] == [(5, 3, "5.jpg")]
  conftest.write_image(tmp_path / "bad" / "cats" / "1.jpg", "rgb_jpg")
  with pytest.raises(ValueError, match="cats"):
    corel1k.corel_files(str(tmp_path / "bad"))


def test_missing_and_empty_manual_dirs(tmp_path):
  missing = tmp_path / "nope"
  for name in ("corel1k", "cifar10_local", "caltech256", "image_folder"):
    split = datasets.list_splits(name)[0]
    with pytest.raises(FileNotFoundError, match=str(missing)):
      datasets.load_arrays(name, split, manual_dir=missing, data_dir=tmp_path / "d")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="empty"):
    datasets.load_arrays("corel1k", "all", manual_dir=empty, data_dir=tmp_path / "d")
  (empty / "food").mkdir()
  with pytest.raises(ValueError, match="no images"):
    datasets.load_arrays("corel1k", "all", manual_dir=empty, data_dir=tmp_path / "d")
  with pytest.raises(ValueError, match="corel1k"):
    datasets.load_arrays("corel", "all")


def _write_cifar_batch(path, n, seed):
  rng = np.random.default_rng(seed)
  data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
  labels = [int(v) for v in rng.integers(0, 10, size=n)]
  with open(path, "wb") as f:
    pickle.dump({b"batch_label": b"test", b"labels": labels, b"data": data,
                 b"filenames": [b"x.png"] * n}, f)
  return data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels)


def _write_meta(root):
  with open(root / "batches.meta", "wb") as f:
    pickle.dump({b"label_names": [n.encode() for n in cifar10_local.CLASS_NAMES],
                 b"num_cases_per_batch": 10000, b"num_vis": 3072}, f)


def test_cifar_python_pickles(tmp_path):
  root = tmp_path / "cifar-10-batches-py"
  root.mkdir()
  _write_meta(root)
  x1, y1 = _write_cifar_batch(root / "data_batch_1", 5, 0)
  x2, y2 = _write_cifar_batch(root / "data_batch_2", 4, 1)
  xt, yt = _write_cifar_batch(root / "test_batch", 3, 2)
  assert cifar10_local.detect_layout(str(root)) == "python"
  train = datasets.load_arrays("cifar10_local", "train", manual_dir=root, data_dir=tmp_path / "d")
  np.testing.assert_array_equal(train.ids, [0, 1, 2, 3, 4, 10000, 10001, 10002, 10003])
  np.testing.assert_array_equal(train.images, np.concatenate([x1, x2]))  # exact pixels
  np.testing.assert_array_equal(train.labels, np.concatenate([y1, y2]))
  test = datasets.load_arrays("cifar10_local", "test", manual_dir=root, data_dir=tmp_path / "d")
  np.testing.assert_array_equal(test.images, xt)
  np.testing.assert_array_equal(test.ids, [0, 1, 2])
  assert test.class_names[0] == "airplane"
  # A truncated official pickle (as found in many public copies) fails before generation,
  # naming the file.
  (root / "data_batch_3").write_bytes((root / "data_batch_1").read_bytes()[:5000])
  with pytest.raises(ValueError, match="data_batch_3"):
    cifar10_local.read_batch(str(root / "data_batch_3"))
  with pytest.raises(ValueError, match="data_batch_3"):
    datasets.load_arrays("cifar10_local", "train", manual_dir=root, data_dir=tmp_path / "d2")


def test_cifar_jpeg_layout_with_index_csv(tmp_path):
  root = tmp_path / "cifar10"
  _write_meta((root.mkdir() or root))
  rows = [(0, "cat", "0000"), (1, "ship", "0000"), (2, "cat", "0001"), (3, "ship", "0001")]
  for row, class_name, stem in rows:
    conftest.write_image(root / "test_batch_jpeg" / class_name / f"{stem}.jpg", "rgb_jpg",
                         seed=row, size=(32, 32))
  conftest.write_image(root / "test_batch_jpeg" / "cat" / "0002.jpg", "rgb_jpg", size=(20, 20))
  rows.append((4, "cat", "0002"))
  (root / "test_batch_index.csv").write_text("batch_index,label,label_name,jpeg_path\n" + "".join(
      f"{r},0,{c},test_batch_jpeg/{c}/{s}.jpg\n" for r, c, s in rows))
  conftest.write_image(root / "data_batch_2_jpeg" / "frog" / "0000.jpg", "rgb_jpg",
                       size=(32, 32))
  assert cifar10_local.detect_layout(str(root)) == "jpeg"
  test = datasets.load_arrays("cifar10_local", "test", manual_dir=root, data_dir=tmp_path / "d")
  np.testing.assert_array_equal(test.ids, [0, 1, 2, 3])  # the 20x20 file is skipped
  np.testing.assert_array_equal(test.labels, [3, 8, 3, 8])
  assert abs(test.images[2].astype(int) - conftest.pattern(2, 32, 32)).mean() < 6
  train = datasets.load_arrays("cifar10_local", "train", manual_dir=root, data_dir=tmp_path / "d")
  np.testing.assert_array_equal(train.ids, [10000])  # no CSV: (k - 1) * 10000 + position
  np.testing.assert_array_equal(train.labels, [6])


def test_cifar_jpeg_whole_train_folder(tmp_path):
  """train_jpeg/ becomes split "train"; the data_batch_<k>_jpeg folders become "train_batches"."""
  root = tmp_path / "cifar10"
  for class_name, stem, seed in (("ship", "0000", 0), ("cat", "0001", 1), ("cat", "0000", 2)):
    conftest.write_image(root / "train_jpeg" / class_name / f"{stem}.jpg", "rgb_jpg", seed=seed,
                         size=(32, 32))
  conftest.write_image(root / "train_jpeg" / "cat" / "0002.jpg", "corrupt")
  conftest.write_image(root / "data_batch_1_jpeg" / "frog" / "0000.jpg", "rgb_jpg", seed=3,
                       size=(32, 32))
  conftest.write_image(root / "test_batch_jpeg" / "dog" / "0000.jpg", "rgb_jpg", seed=4,
                       size=(32, 32))
  kw = dict(manual_dir=root, data_dir=tmp_path / "d")
  train = datasets.load_arrays("cifar10_local", "train", **kw)
  np.testing.assert_array_equal(train.labels, [3, 3, 8])  # (class, file name) order
  np.testing.assert_array_equal(train.ids, [0, 1, 3])  # position; the corrupt 0002 is skipped
  assert abs(train.images[0].astype(int) - conftest.pattern(2, 32, 32)).mean() < 6
  assert abs(train.images[2].astype(int) - conftest.pattern(0, 32, 32)).mean() < 6
  batches = datasets.load_arrays("cifar10_local", "train_batches", **kw)
  np.testing.assert_array_equal(batches.labels, [6])
  np.testing.assert_array_equal(datasets.load_arrays("cifar10_local", "test", **kw).labels, [5])
  info = cifar10_local.Cifar10Local(data_dir=tmp_path / "d", config="jpeg").info
  assert info.metadata["batches"]["train"] == ["train"]
  assert info.metadata["skipped"] == [os.path.join("train_jpeg", "cat", "0002.jpg")]


def test_caltech256_excludes_clutter(tmp_path):
  cats = tmp_path / "256_ObjectCategories"
  conftest.write_image(cats / "001.ak47" / "001_0001.jpg", "rgb_jpg")
  conftest.write_image(cats / "001.ak47" / "001_0002.png", "rgba_png", size=(20, 12))
  conftest.write_image(cats / "002.american-flag" / "002_0001.jpg", "cmyk_jpg")
  conftest.write_image(cats / "002.american-flag" / "002_0002.jpg", "corrupt")
  conftest.write_image(cats / "257.clutter" / "257_0001.jpg", "rgb_jpg")
  arrays = datasets.load_arrays("caltech256", "all", manual_dir=tmp_path,
                                data_dir=tmp_path / "d", image_size=16)
  np.testing.assert_array_equal(arrays.ids, [10001, 10002, 20001])
  np.testing.assert_array_equal(arrays.labels, [0, 0, 1])
  assert len(arrays.class_names) == 256
  assert arrays.class_names[:3] == ["ak47", "american-flag", "003"]
  files, _ = caltech256.caltech_files(str(cats))  # the category folder itself works too
  assert len(files) == 4


def test_image_folder_split_and_config(tmp_path):
  root = tmp_path / "photos"
  for c, class_name in enumerate(["cat", "dog", "eel"]):
    for i in range(5):
      sub = "nested/" if i == 4 else ""
      conftest.write_image(root / class_name / f"{sub}{i}.png", "rgb_png", seed=5 * c + i)
  conftest.write_image(root / "dog" / "bad.jpg", "corrupt")
  kw = dict(manual_dir=root, data_dir=tmp_path / "d")
  everything = datasets.load_arrays("image_folder", "all", **kw)
  assert everything.class_names == ["cat", "dog", "eel"]
  assert len(everything) == 15 and np.bincount(everything.labels).tolist() == [5, 5, 5]
  train = datasets.load_arrays("image_folder", "train", **kw)
  test = datasets.load_arrays("image_folder", "test", **kw)
  # The split is drawn over the 16 files found (1 of 5 or 6 per class to test); the corrupt
  # dog/bad.jpg is then skipped, from whichever side it fell on.
  assert np.bincount(test.labels, minlength=3).tolist() in ([1, 1, 1], [1, 0, 1])
  assert np.bincount(train.labels, minlength=3).tolist() in ([4, 4, 4], [4, 5, 4])
  np.testing.assert_array_equal(np.sort(np.concatenate([train.ids, test.ids])), everything.ids)
  by_id = dict(zip(everything.ids.tolist(), everything.images))
  for image_id, image in zip(test.ids, test.images):
    np.testing.assert_array_equal(image, by_id[image_id])
  other = datasets.load_arrays("image_folder", "test", seed=3, **kw)
  again = datasets.load_arrays("image_folder", "test", **kw)
  np.testing.assert_array_equal(again.ids, test.ids)
  assert image_folder.make_config(root, split_seed=3).name != image_folder.make_config(root).name
  assert len(other) == 3
  flat = tmp_path / "flat"
  conftest.write_image(flat / "x.png", "rgb_png")
  with pytest.raises(ValueError, match="no class folders"):
    image_folder.make_config(flat)


def test_builder_without_manual_dir_names_what_is_needed(tmp_path):
  builder = caltech256.Caltech256(data_dir=tmp_path / "d")
  with pytest.raises(FileNotFoundError, match="256_ObjectCategories"):
    builder.download_and_prepare()
  # image_folder falls back to the folder its config was made from.
  conftest.write_image(tmp_path / "p" / "a" / "1.png", "rgb_png")
  builder = image_folder.ImageFolder(data_dir=tmp_path / "d",
                                     config=image_folder.make_config(tmp_path / "p"))
  with pytest.raises(ValueError, match="no class with 2 or more"):
    builder.download_and_prepare()
  conftest.write_image(tmp_path / "p" / "a" / "2.png", "rgb_png")
  builder.download_and_prepare()
  assert builder.info.splits["train"].num_examples == 1
  assert builder.info.splits["test"].num_examples == 1


def test_split_with_only_unreadable_files_is_a_clear_error(tmp_path):
  conftest.write_image(tmp_path / "m" / "buses" / "300.jpg", "corrupt")
  with pytest.raises(ValueError, match="none of its 1 image"):
    datasets.load_arrays("corel1k", "all", manual_dir=tmp_path / "m", data_dir=tmp_path / "d")


def test_two_jobs_preparing_the_same_data_set_at_once(tmp_path):
  """Two processes that load an unprepared data set at the same moment both get it: the first
  prepares it under the lock, the second waits and reads it (before the lock the second failed
  renaming its copy onto the first one's)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  for c, class_name in enumerate(["cat", "dog"]):
    for i in range(40):
      conftest.write_image(tmp_path / "photos" / class_name / f"{i}.png", "rgb_png",
                           seed=40 * c + i)
  code = ("import sys\nfrom cbir_jax.data import datasets\n"
          "a = datasets.load_arrays('image_folder', 'all', manual_dir=sys.argv[1], "
          "data_dir=sys.argv[2])\nprint('loaded', len(a))\n")
  args = [sys.executable, "-c", code, str(tmp_path / "photos"), str(tmp_path / "d")]
  jobs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
  for job in jobs:
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-2000:]
    assert "loaded 80" in out
  assert (tmp_path / "d" / "image_folder" / ".prepare.lock").exists()
