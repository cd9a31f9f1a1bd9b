"""Tests for cbir_jax.models.alexnet pieces not covered by the shared forward tests."""

import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax.models import alexnet, registry


def test_local_response_norm_matches_formula():
  x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float64)
  expected = np.empty_like(x)
  for i in range(7):
    window = (x[..., max(0, i - 2):min(7, i + 3)] ** 2).sum(-1)
    expected[..., i] = x[..., i] / (2.0 + 1e-4 * window) ** 0.75
  np.testing.assert_allclose(alexnet.local_response_norm(jnp.asarray(x, jnp.float32)), expected,
                             rtol=1e-5)


def test_lrn_field_changes_outputs_not_params(host_init):
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3)) * 30.0
  plain = registry.get_model("alexnet_tiny", num_classes=3, small_input=True)
  lrn = registry.get_model("alexnet_tiny", num_classes=3, small_input=True, lrn=True)
  shapes = jax.eval_shape(plain.init, jax.random.key(0), x)
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(
      lambda a: a.shape, jax.eval_shape(lrn.init, jax.random.key(0), x))
  variables = host_init(shapes, seed=0)
  out_plain, out_lrn = jax.jit(lambda v, x: (plain.apply(v, x, features="fc6"),
                                             lrn.apply(v, x, features="fc6")))(variables, x)
  assert not np.allclose(out_plain[1]["fc6"], out_lrn[1]["fc6"])
  assert np.all(np.asarray(out_lrn[1]["fc6"]) >= 0)  # fc6/fc7 endpoints are post-ReLU
