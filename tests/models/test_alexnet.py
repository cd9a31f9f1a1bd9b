"""Tests for cbir_jax.models.alexnet pieces not covered by the shared forward tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import alexnet, conv, dense, registry


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


@pytest.mark.usefixtures("cpu_backend")
def test_winograd_convs_keep_params_outputs_and_gradients(monkeypatch, host_init):
  # conv2-conv5 run as models.conv.winograd_conv and fc6-fc8 through dense.dense_dot_general on
  # CPU: the same parameters (names, shapes), logits and gradients as with lax's convolution and
  # dot, to float32 rounding.
  model = alexnet.AlexNet(num_classes=5, widths=(16, 24, 32, 24, 16), hidden=32,
                          dropout_rate=0.0)
  x = jax.random.normal(jax.random.key(1), (2, 67, 71, 3))
  labels = jnp.array([1, 3])
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = host_init(shapes, seed=2)

  def loss(params):
    logits = model.apply({"params": params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels]), logits

  def run():
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: loss(p)[0]))(variables["params"])
    convs = sum(str(e.primitive) == "conv_general_dilated" and e.invars[0].aval.ndim == 4
                for e in jaxpr.jaxpr.eqns)  # 2-D convolutions
    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    return convs, logits, grads

  convs, logits, grads = run()
  monkeypatch.setattr(conv, "winograd_conv", jax.lax.conv_general_dilated)
  monkeypatch.setattr(dense, "dense_dot_general", jax.lax.dot_general)
  assert jax.tree.map(jnp.shape, jax.eval_shape(model.init, jax.random.key(0), x)) == \
      jax.tree.map(jnp.shape, shapes)
  lax_convs, want_logits, want_grads = run()
  # lax: 5 forward, 4 input- and 5 weight-gradient convolutions; Winograd: conv1's forward and
  # weight gradient only (3 input channels, stride 4).
  assert (convs, lax_convs) == (2, 14)
  np.testing.assert_allclose(logits, want_logits, rtol=0,
                             atol=1e-5 * float(jnp.max(jnp.abs(want_logits))))
  assert jax.tree.structure(grads) == jax.tree.structure(want_grads)
  for path, got in jax.tree_util.tree_leaves_with_path(grads):
    want = dict(jax.tree_util.tree_leaves_with_path(want_grads))[path]
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * float(jnp.max(jnp.abs(want))),
                               err_msg=jax.tree_util.keystr(path))
