"""digits through load_arrays: values, shapes, seeded stratified splits, resizing, errors."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from cbir_jax.data import datasets


@pytest.fixture(scope="module")
def digits_all():
  return datasets.load_arrays("digits", "all")


def test_all_matches_sklearn(digits_all):
  ref = load_digits()
  a = digits_all
  assert a.images.shape == (1797, 8, 8, 1) and a.images.dtype == np.uint8
  assert a.labels.dtype == np.int32 and a.ids.dtype == np.int64
  np.testing.assert_array_equal(a.ids, np.arange(1797))
  np.testing.assert_array_equal(a.labels, ref.target)
  np.testing.assert_array_equal(a.images[..., 0], np.round(ref.images * 255 / 16))
  assert a.images.max() == 255 and a.images.min() == 0
  assert a.class_names == [str(i) for i in range(10)]


def test_train_test_split_stratified_seeded(digits_all):
  train = datasets.load_arrays("digits", "train", seed=0)
  test = datasets.load_arrays("digits", "test", seed=0)
  assert len(train) + len(test) == 1797
  assert not set(train.ids.tolist()) & set(test.ids.tolist())
  assert abs(len(test) - 0.2 * 1797) <= 10
  # Stratified: each class has about 20% in test.
  counts_all = np.bincount(digits_all.labels, minlength=10)
  counts_test = np.bincount(test.labels, minlength=10)
  assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)
  # Rows are the same rows as in "all".
  np.testing.assert_array_equal(test.images, digits_all.images[test.ids])
  np.testing.assert_array_equal(test.labels, digits_all.labels[test.ids])
  again = datasets.load_arrays("digits", "test", seed=0)
  np.testing.assert_array_equal(again.ids, test.ids)
  other = datasets.load_arrays("digits", "test", seed=1)
  assert not np.array_equal(other.ids, test.ids)


def test_image_size_resizes(digits_all):
  big = datasets.load_arrays("digits", "test", image_size=32)
  assert big.images.shape[1:] == (32, 32, 1) and big.images.dtype == np.uint8
  rect = datasets.load_arrays("digits", "all", image_size=(16, 12))
  assert rect.images.shape == (1797, 16, 12, 1)
  # A bilinear upscale keeps the image's mean brightness roughly.
  small_mean = digits_all.images[big.ids].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(big.images.mean(axis=(1, 2, 3)), small_mean, atol=12)
