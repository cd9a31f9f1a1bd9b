"""Tests for cbir_jax.models.lenet (LeNet-L)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import lenet, registry


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _expected_params(h: int, w: int, c: int, k: int, classes: int) -> int:
  flat = 16 * lenet.lenet_spatial(h) * lenet.lenet_spatial(w)
  return ((5 * 5 * c * 6 + 6) + (5 * 5 * 6 * 16 + 16) + (flat * k + k) + (k * 120 + 120)
          + (120 * 84 + 84) + (84 * classes + classes))


@pytest.mark.parametrize("hw,flat", [((32, 32), 400), ((227, 227), 44_944), ((384, 256), 90_768)])
def test_param_count_and_shapes_via_eval_shape(hw, flat):
  model = registry.get_model("lenet_l", num_classes=10)
  x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  assert variables["params"]["lk"]["kernel"].shape == (flat, 1400)
  assert _count(variables) == _expected_params(*hw, 3, 1400, 10)
  logits, feats = jax.eval_shape(
      lambda v, x: model.apply(v, x, features=("lk", "c5", "f6")), variables, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert {k: v.shape for k, v in feats.items()} == {"lk": (2, 1400), "c5": (2, 120), "f6": (2, 84)}


def test_paper_384x256_param_count_is_127m():
  # 16 * 93 * 61 = 90,768 S4 values; L-K at K=1400 dominates the 127,258,606 parameters.
  assert _expected_params(384, 256, 3, 1400, 10) == 127_258_606


@pytest.fixture(scope="module")
def small():
  model = registry.get_model("lenet_l", num_classes=10, lk_features=32, dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 1))
  init = jax.jit(model.init)
  return model, init(jax.random.key(0), x), x, init


def test_features_match_logits_pass(small):
  model, variables, x, _ = small
  logits = model.apply(variables, x)
  logits2, feats = model.apply(variables, x, features=("f6", "lk"))
  np.testing.assert_array_equal(logits, logits2)
  assert set(feats) == {"f6", "lk"}
  assert feats["f6"].shape == (4, 84) and feats["lk"].shape == (4, 32)
  # f6 feeds the output layer: logits = f6 @ W + b.
  p = variables["params"]["output"]
  np.testing.assert_allclose(feats["f6"] @ p["kernel"] + p["bias"], logits, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_train_and_no_batch_stats(small):
  model, variables, x, _ = small
  assert set(variables) == {"params"}
  eval1, eval2 = model.apply(variables, x), model.apply(variables, x, train=False)
  np.testing.assert_array_equal(eval1, eval2)
  out, updates = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)},
                             mutable=["batch_stats"])
  assert not updates  # no batch norm in LeNet-L
  assert not np.allclose(out, eval1)


def test_same_seed_same_init(small):
  _, variables, x, init = small
  again = init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, variables, again)
  other = init(jax.random.key(1), x)
  assert not np.allclose(variables["params"]["c1"]["kernel"], other["params"]["c1"]["kernel"])


def test_relu_max_fields_and_bad_values(small):
  _, _, x, _ = small
  modern = registry.get_model("lenet_l", num_classes=3, lk_features=8, activation="relu",
                              pooling="max")
  shapes = jax.eval_shape(lambda x: modern.init(jax.random.key(0), x), x)
  assert shapes["params"]["output"]["kernel"].shape == (84, 3)
  with pytest.raises(ValueError, match="activation"):
    registry.get_model("lenet_l", num_classes=3, activation="gelu").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="pooling"):
    registry.get_model("lenet_l", num_classes=3, pooling="lp").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="16x16"):
    registry.get_model("lenet_l", num_classes=3).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_unknown_endpoint_raises(small):
  model, variables, x, _ = small
  with pytest.raises(ValueError, match="valid endpoints.*'lk', 'c5', 'f6'"):
    model.apply(variables, x, features=("fc7",))
