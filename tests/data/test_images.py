"""images: conversion of every common PIL mode to RGB, strict decoding, resizing; splits."""

import numpy as np
import pytest

from cbir_jax.data import images
from cbir_jax.data import splits
from tests.data import conftest


@pytest.mark.parametrize("kind", ["rgb_png", "rgba_png", "gray16_png", "rgb_jpg", "gray_jpg",
                                  "cmyk_jpg", "palette_gif"])
def test_load_for_tfds_converts_to_rgb(tmp_path, kind):
  path = tmp_path / f"x.{kind.split('_')[-1]}"
  expected = conftest.write_image(path, kind, seed=3)
  out = images.load_for_tfds(path)
  if kind == "rgb_jpg":
    assert isinstance(out, bytes) and out == path.read_bytes()  # passed through unchanged
    out = images.decode_rgb(out)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  if kind.endswith("png"):
    np.testing.assert_array_equal(out, expected)  # lossless
  elif kind != "palette_gif":
    assert np.abs(out.astype(int) - expected).mean() < 6  # JPEG / CMYK round trip
  else:
    assert np.abs(out.astype(int) - expected).mean() < 12  # 256-colour palette


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_load_for_tfds_raises_on_bad_files(tmp_path, kind):
  path = tmp_path / "bad.jpg"
  conftest.write_image(path, kind)
  with pytest.raises((OSError, ValueError, SyntaxError)):
    images.load_for_tfds(path)


def test_resize_and_parse_image_size():
  x = conftest.pattern(0, 8, 10)
  assert images.resize(x, (8, 10)) is x
  y = images.resize(x, (16, 20))
  assert y.shape == (16, 20, 3) and y.dtype == np.uint8
  assert images.resize(x[..., :1], (4, 5)).shape == (4, 5, 1)
  assert images.resize_all(np.stack([x, x]), (3, 4)).shape == (2, 3, 4, 3)
  assert images.parse_image_size(7) == (7, 7)
  assert images.parse_image_size((3, 4)) == (3, 4)
  assert images.parse_image_size(None) is None
  for bad in (0, (1, 2, 3), (-1, 4)):
    with pytest.raises(ValueError, match="image_size"):
      images.parse_image_size(bad)


def test_stratified_split_properties():
  labels = np.repeat(np.arange(4), [10, 7, 2, 1])
  train, test = splits.stratified_split(labels, 0.3, seed=5)
  assert np.intersect1d(train, test).size == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
  np.testing.assert_array_equal(np.bincount(labels[test], minlength=4), [3, 2, 1, 0])
  again = splits.stratified_split(labels, 0.3, seed=5)
  np.testing.assert_array_equal(again[1], test)
  assert any(not np.array_equal(splits.stratified_split(labels, 0.3, seed=s)[1], test)
             for s in range(6, 9))
  with pytest.raises(ValueError, match="test_fraction"):
    splits.stratified_split(labels, 1.0, seed=0)
