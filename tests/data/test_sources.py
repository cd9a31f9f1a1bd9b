"""data.sources: the folder and ArrayRecord tfds sources, and grain's decoded batches."""

import numpy as np
import pytest

from cbir_jax.data import images as images_lib
from cbir_jax.data import sources
from cbir_jax.data.builders import image_folder
from tests.photo_files import make_photos


def test_folder_source_order_and_unreadable_file(tmp_path):
  root = make_photos(tmp_path / "photos", 3)
  source = sources.ImageFolderSource(root)
  files = image_folder.folder_files(str(root), ("c0", "c1", "c2"))
  assert len(source) == len(files) == 10
  assert [source[i]["path"] for i in range(10)] == [f.relpath for f in files]
  assert [source[i]["label"] for i in range(10)] == [f.label for f in files]
  batches = list(sources.decoded_batches(source, [9, 6, 4, 0], image_shape=(8, 6, 3),
                                         batch_size=3, num_threads=2))
  assert [b["image"].shape for b in batches] == [(3, 8, 6, 3), (1, 8, 6, 3)]
  got = np.concatenate([b["id"] for b in batches])
  np.testing.assert_array_equal(got, [9, 6, 4, 0])
  ok = np.concatenate([b["ok"] for b in batches])
  assert source[6]["path"] == "c1/bad.jpg" and ok.tolist() == [True, False, True, True]
  assert not batches[0]["image"][1].any()  # the unreadable file: zeros, marked not ok
  want = images_lib.resize(images_lib.decode_rgb((root / source[9]["path"]).read_bytes()), (8, 6))
  np.testing.assert_array_equal(batches[0]["image"][0], want)


def test_flat_folder_is_one_class(tmp_path):
  root = make_photos(tmp_path / "photos", 2, bad=False) / "c2"
  source = sources.ImageFolderSource(root)
  assert source.class_names == ["c2"] and len(source) == 2 and source[1]["label"] == 0


def test_folder_source_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist or is not a folder"):
    sources.ImageFolderSource(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no image files in"):
    sources.ImageFolderSource(tmp_path / "empty")


def _builder(root, data_dir, file_format):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = image_folder.ImageFolder(data_dir=str(data_dir), config=image_folder.make_config(
      root), file_format=file_format)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(root)))
  return builder


def test_tfds_array_record_source_reads_the_stored_images(tmp_path):
  root = make_photos(tmp_path / "photos", 4)
  builder = _builder(root, tmp_path / "tfds", "array_record")
  source = sources.TfdsSource(builder, "train")
  assert source.class_names == ["c0", "c1", "c2"] and len(source) >= 6
  for i in range(len(source)):
    record = source[i]
    stored = images_lib.decode_rgb(record["encoded"])
    np.testing.assert_array_equal(stored, images_lib.decode_rgb(
        (root / record["path"]).read_bytes()))
    assert record["label"] == int(record["path"][1])
  with pytest.raises(ValueError, match="has no split 'validation'"):
    sources.TfdsSource(builder, "validation")


def test_tfds_tfrecord_set_is_refused_with_the_format_to_use(tmp_path):
  root = make_photos(tmp_path / "photos", 2, bad=False)
  builder = _builder(root, tmp_path / "tfds", "tfrecord")
  with pytest.raises(ValueError, match="file_format='array_record'"):
    sources.TfdsSource(builder, "train")
