"""models.dense.dense_dot_general: Dense layers' products as width-1 1-D convolutions on CPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import dense
from tests.models.test_conv import _check_second_order, _check_vjp, _eqns, _run_on_8_devices

# The CPU formulation is what is tested, on any host (tests/models/conftest.py).
pytestmark = pytest.mark.usefixtures("cpu_backend")


def _dense(x, w):
  return dense.dense_dot_general(x, w, (((1,), (0,)), ((), ())))


def _dense_path(fn, *args, platform="cpu") -> bool:
  eqns = _eqns(fn, *args, platform=platform)
  return (any("custom_vjp" in str(e.primitive) for e in eqns) and
          not any(str(e.primitive) == "dot_general" for e in eqns))


@pytest.mark.parametrize("b,k,o", [(16, 37, 20), (1, 9, 5), (3, 64, 1)])
def test_dense_dot_general_values_and_gradients_match_lax(b, k, o):
  rng = np.random.default_rng(b * 100 + k + o)
  x = jnp.asarray(rng.standard_normal((b, k), np.float32))
  w = jnp.asarray(rng.standard_normal((k, o), np.float32))
  assert _dense_path(_dense, x, w)
  _check_vjp(_dense, lambda a, c: a @ c, x, w, 1e-5, rng)


def test_dense_dot_general_falls_back_to_lax():
  rng = np.random.default_rng(9)
  x = jnp.asarray(rng.standard_normal((4, 6), np.float32))
  w = jnp.asarray(rng.standard_normal((6, 3), np.float32))
  x3 = jnp.asarray(rng.standard_normal((2, 4, 6), np.float32))
  others = [
      (lambda a, c: dense.dense_dot_general(a, c, (((2,), (0,)), ((), ()))), (x3, w)),
      (lambda a, c: dense.dense_dot_general(a, c, (((0,), (1,)), ((), ()))), (x.T, w.T)),
      (lambda a, c: dense.dense_dot_general(a, c, (((1,), (0,)), ((), ())),
                                           preferred_element_type=jnp.float32), (x, w)),
      (lambda a, c: _dense(a.astype(jnp.float16), c.astype(jnp.float16)), (x, w)),
  ]
  for fn, args in others:
    assert not _dense_path(fn, *args)
  np.testing.assert_array_equal(np.asarray(others[0][0](x3, w)), np.asarray(x3 @ w))
  assert _dense_path(_dense, x, w)
  for platform in ("cuda", "tpu"):  # GPUs/TPUs keep lax's dot
    assert not _dense_path(_dense, x, w, platform=platform)


def test_dense_dot_general_lowering_platform_chooses():
  x = jax.ShapeDtypeStruct((4, 6), jnp.float32)
  w = jax.ShapeDtypeStruct((6, 3), jnp.float32)
  traced = jax.jit(jax.grad(lambda a, c: jnp.sum(_dense(a, c) ** 2), argnums=(0, 1))).trace(x, w)
  for platform in ("cpu", "cuda", "tpu"):
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    # CPU: width-1 convolutions forward and for the input gradient; elsewhere dots only.
    assert ("stablehlo.convolution" in text) == (platform == "cpu"), platform


def test_dense_dot_general_flax_dense_jit_vmap_and_second_order():
  rng = np.random.default_rng(10)
  x = jnp.asarray(rng.standard_normal((3, 5, 12), np.float32))
  plain = nn.Dense(7)
  fast = nn.Dense(7, dot_general=dense.dense_dot_general)
  params = plain.init(jax.random.PRNGKey(0), x[0])
  assert jax.tree_util.tree_map(jnp.shape, fast.init(jax.random.PRNGKey(0), x[0])) == \
      jax.tree_util.tree_map(jnp.shape, params)
  want = jax.vmap(lambda a: plain.apply(params, a))(x)
  got = jax.jit(jax.vmap(lambda a: fast.apply(params, a)))(x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  _check_second_order(plain, fast, params, x[0], 1e-5)


_DENSE_SHARDED_SCRIPT = """
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from cbir_jax.models import dense
assert len(jax.devices()) == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
rng = np.random.default_rng(0)
x = jax.device_put(jnp.asarray(rng.standard_normal((16, 40)), jnp.float32),
                   NamedSharding(mesh, P("data")))
w = jnp.asarray(rng.standard_normal((40, 24)) * 0.1, jnp.float32)
def loss(w, x, fn):
  return jnp.sum(jnp.tanh(fn(x, w, (((1,), (0,)), ((), ())))) ** 2)
grad = jax.jit(jax.grad(lambda w, x: loss(w, x, dense.dense_dot_general), argnums=(0, 1)))
text = grad.lower(w, x).compile().as_text()
assert "all-gather" not in text and "all-to-all" not in text, text
got = grad(w, x)
assert got[1].sharding.spec == P("data"), got[1].sharding
want = jax.grad(lambda w, x: loss(w, x, jax.lax.dot_general), argnums=(0, 1))(w, np.asarray(x))
for a, b in zip(got, want):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * np.abs(b).max())
print("OK")
"""


def test_dense_dot_general_batch_sharded_over_8_devices_stays_sharded():
  _run_on_8_devices(_DENSE_SHARDED_SCRIPT)
