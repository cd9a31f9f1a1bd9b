"""datasets.load_split: the one config -> arrays path, its image_size rule and validation carve."""

import re

import ml_collections
import numpy as np
import pytest

from cbir_jax.data import datasets


def _ds(**kw):
  return ml_collections.ConfigDict(dict({"name": "digits", "manual_dir": "", "data_dir": "",
                                         "image_size": 16, "train_split": "train"}, **kw))


def test_validation_is_a_seeded_stratified_carve_of_the_training_split():
  ds = _ds(validation_fraction=0.2)
  whole = datasets.load_split(ds, "train", seed=0, carve_validation=False)
  rest = datasets.load_split(ds, "train", seed=0)
  val = datasets.load_split(ds, "validation", seed=0)
  assert len(rest) + len(val) == len(whole) and not set(rest.ids) & set(val.ids)
  assert set(rest.ids) | set(val.ids) == set(whole.ids)
  counts = np.bincount(val.labels, minlength=10) / np.bincount(whole.labels, minlength=10)
  np.testing.assert_allclose(counts, 0.2, atol=0.02)
  again = datasets.load_split(ds, "validation", seed=0)
  np.testing.assert_array_equal(again.ids, val.ids)
  assert not np.array_equal(datasets.load_split(ds, "validation", seed=1).ids, val.ids)
  test = datasets.load_split(ds, "test", seed=0)  # The query split is untouched.
  assert not set(test.ids) & set(val.ids)
  assert datasets.config_splits(ds)[-1] == "validation"


def test_no_validation_split_without_a_fraction():
  with pytest.raises(ValueError, match="unknown split 'validation' for data set digits"):
    datasets.load_split(_ds(), "validation", seed=0)
  with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\), got 1.5"):
    datasets.load_split(_ds(validation_fraction=1.5), "train", seed=0)


@pytest.mark.parametrize("size", [-1, 0, "", 2.5, (0, 4), (1, 2, 3), True])
def test_image_size_has_one_spelling_for_native(size):
  with pytest.raises(ValueError, match="image_size must be None .*got " + re.escape(repr(size))):
    datasets.check_dataset_config(_ds(image_size=size))


def test_native_size_is_none():
  assert datasets.config_image_size(None) is None
  assert datasets.config_image_size(7) == (7, 7)
  assert datasets.config_image_size((3, 5)) == (3, 5)
  assert datasets.load_split(_ds(image_size=None), "test", seed=0).images.shape[1:] == (8, 8, 1)
