"""Tests for cbir_jax.models.registry."""

import pytest

from cbir_jax import models
from cbir_jax.models import registry


PAPER_ENDPOINTS = {
    "lenet_l": ("lk", "c5", "f6"),
    "alexnet": ("fc6", "fc7", "fc8"),
    "resnet50": ("pool",),
    "inception_v3": ("pool",),
    "mobilenet_v2": ("pool",),
    "dfs_resnet50": ("pool", "dfs"),
    "dfs_inception_v3": ("pool", "dfs"),
    "dfs_mobilenet_v2": ("pool", "dfs"),
}


def test_list_models_contains_paper_models():
  assert set(PAPER_ENDPOINTS) <= set(registry.list_models())
  assert registry.list_models() == sorted(registry.list_models())


def test_endpoints_follow_the_contract():
  for name, names in PAPER_ENDPOINTS.items():
    assert registry.endpoints(name) == names


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="unknown model 'lenet5'.*lenet_l"):
    registry.get_model("lenet5", num_classes=10)
  with pytest.raises(ValueError, match="valid models"):
    registry.endpoints("nope")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_num_classes(bad):
  with pytest.raises(ValueError, match="num_classes"):
    registry.get_model("lenet_l", num_classes=bad)


def test_bad_kwarg_is_type_error():
  with pytest.raises(TypeError, match="lenet_l"):
    registry.get_model("lenet_l", num_classes=10, no_such_field=1)


def test_package_reexports():
  assert models.get_model is registry.get_model
  assert models.list_models is registry.list_models
  assert models.endpoints is registry.endpoints
