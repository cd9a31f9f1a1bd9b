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


# --- The input-size guard. ---


@pytest.fixture
def warnings_logged(monkeypatch):
  """The messages registry logs with absl's logging.warning during the test."""
  logged = []
  monkeypatch.setattr(registry.logging, "warning", lambda fmt, *args: logged.append(fmt % args))
  return logged


def test_alexnet_at_64_warns_by_name_and_size(warnings_logged):
  # issue 21: at 64x64 conv5 is 3x3 and the last max pool leaves 1x1, which the adaptive 6x6
  # pool copies 36 times. A warning, not an error: the CPU-scale Corel runs use it on purpose.
  result = registry.check_input_size("alexnet", 64)
  assert result == registry.InputSizeCheck("alexnet", (64, 64), (3, 3), 5, False)
  assert len(warnings_logged) == 1
  assert "'alexnet' at 64x64" in warnings_logged[0] and "95x95" in warnings_logged[0]


def test_paper_sizes_pass_silently(warnings_logged):
  assert registry.check_input_size("alexnet", (227, 227)).last_map == (13, 13)
  assert registry.check_input_size("lenet_l", (256, 384)).meaningful
  assert registry.check_input_size("lenet_l", 32, channels=1).meaningful  # the digits demo
  assert registry.check_input_size("resnet_tiny", 32, small_input=True).last_map == (4, 4)
  assert warnings_logged == []


def test_strict_raises_below_the_rule():
  with pytest.raises(ValueError, match="'alexnet_tiny' at 64x80.*3x4.*5x5"):
    registry.check_input_size("alexnet_tiny", (64, 80), strict=True)


@pytest.mark.parametrize("name, size, kwargs, match", [
    ("lenet_l", (8, 8), {}, "16x16"),                        # its own check: C3 would be empty
    ("alexnet_tiny", (40, 40), {}, "small_input"),           # conv1 + 2 pools leave nothing
    ("alexnet_tiny", (12, 12), {"small_input": True}, "15x15"),
    ("inception_v3_tiny", (60, 90), {}, "small_input"),
])
def test_inputs_that_give_nothing_are_errors_even_without_strict(name, size, kwargs, match):
  with pytest.raises(ValueError, match=rf"'{name}' cannot take {size[0]}x{size[1]}.*{match}"):
    registry.check_input_size(name, size, **kwargs)


@pytest.mark.parametrize("bad", [0, (0, 5), (5,), (5, 5, 5), -3, 2.5, (True, 4), None])
def test_bad_image_size(bad):
  with pytest.raises(ValueError, match="image_size"):
    registry.check_input_size("lenet_l", bad)


@pytest.mark.parametrize("name, kwargs, side", [
    ("alexnet_tiny", {}, 95), ("alexnet_tiny", {"small_input": True}, 23),
    ("lenet_l", {}, 16), ("resnet_tiny", {}, 33), ("resnet_tiny", {"small_input": True}, 9),
    ("inception_v3_tiny", {}, 107), ("inception_v3_tiny", {"small_input": True}, 17),
    ("mobilenet_v2_tiny", {}, 17), ("dfs_mobilenet_v2_tiny", {"small_input": True}, 9),
])
def test_smallest_meaningful_input(name, kwargs, side):
  # The boundary docs/MODELS.md lists: meaningful at `side`, not one pixel below.
  assert registry.check_input_size(name, side, warn=False, **kwargs).meaningful
  try:
    below = registry.check_input_size(name, side - 1, warn=False, **kwargs).meaningful
  except ValueError:  # the model cannot take it at all
    below = False
  assert not below
  if not name.startswith("inception"):  # ~12 abstract evaluations; InceptionV3's take ~10 s
    assert registry.min_input_size(name, **kwargs) == side


def test_rules_name_registered_models():
  assert set(registry._MIN_LAST_CONV) <= set(registry.list_models())
