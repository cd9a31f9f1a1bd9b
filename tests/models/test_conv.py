"""models.conv: drop-in conv_general_dilated CPU formulations (shift_conv, row_conv, winograd_conv),
equal to lax's values and gradients, chosen by the lowering platform."""

import fractions
import os
import subprocess
import sys

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import conv

# The CPU formulations are what is tested, on any host (tests/models/conftest.py).
pytestmark = pytest.mark.usefixtures("cpu_backend")

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)


def _shift(x, w, strides, padding):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return conv.shift_conv(x, w, strides, padding, dimension_numbers=dn)


@pytest.mark.parametrize("shape,window,c_out,strides,padding", [
    ((2, 13, 17, 3), (5, 5), 6, (1, 1), "VALID"),
    ((3, 9, 8, 1), (3, 2), 4, (2, 1), "SAME"),
    ((1, 11, 10, 2), (3, 3), 5, (2, 3), ((1, 2), (0, 1))),
    ((2, 6, 7, 4), (1, 1), 3, (1, 1), "VALID"),
])
def test_values_and_gradients_match_lax(shape, window, c_out, strides, padding):
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.standard_normal(shape, np.float32))
  w = jnp.asarray(rng.standard_normal(window + (shape[-1], c_out), np.float32))
  want = _lax(x, w, strides, padding)
  got = jax.jit(_shift, static_argnums=(2, 3))(x, w, strides, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  dy = jnp.asarray(rng.standard_normal(want.shape, np.float32))
  g_want = jax.vjp(lambda a, b: _lax(a, b, strides, padding), x, w)[1](dy)
  g_got = jax.vjp(lambda a, b: _shift(a, b, strides, padding), x, w)[1](dy)
  for a, b in zip(g_got, g_want):  # the backward pass is lax's own: bitwise equal
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_integer_valued_inputs_are_exact():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(-3, 4, (2, 10, 12, 3)).astype(np.float32))
  w = jnp.asarray(rng.integers(-2, 3, (5, 5, 3, 6)).astype(np.float32))
  np.testing.assert_array_equal(np.asarray(_shift(x, w, (1, 1), "VALID")),
                                np.asarray(_lax(x, w, (1, 1), "VALID")))


def test_falls_back_to_lax_outside_its_range():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 8), np.float32))
  big = jnp.asarray(rng.standard_normal((5, 5, 8, 2), np.float32))  # 200 terms > MAX_TERMS
  dn = lax.conv_dimension_numbers(x.shape, big.shape, DN)
  np.testing.assert_array_equal(
      np.asarray(conv.shift_conv(x, big, (1, 1), "VALID", dimension_numbers=dn)),
      np.asarray(_lax(x, big, (1, 1), "VALID")))
  small = big[:3, :3, :2]
  dilated = conv.shift_conv(x[..., :2], small, (1, 1), "VALID", rhs_dilation=(2, 2),
                            dimension_numbers=dn)
  np.testing.assert_array_equal(
      np.asarray(dilated),
      np.asarray(lax.conv_general_dilated(x[..., :2], small, (1, 1), "VALID",
                                          rhs_dilation=(2, 2), dimension_numbers=DN)))


def test_flax_conv_jit_and_vmap():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((3, 2, 12, 12, 3), np.float32))
  plain = nn.Conv(6, (5, 5), padding="VALID")
  shifted = nn.Conv(6, (5, 5), padding="VALID", conv_general_dilated=conv.shift_conv)
  params = plain.init(jax.random.PRNGKey(0), x[0])
  want = jax.vmap(lambda a: plain.apply(params, a))(x)
  got = jax.jit(jax.vmap(lambda a: shifted.apply(params, a)))(x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def _eqns(fn, *args, platform="cpu"):
  """fn's top-level jaxpr equations, each `lax.platform_dependent` choice replaced by the
  equations of the branch that a lowering for `platform` keeps."""
  out = []

  def walk(eqns):
    for e in eqns:
      platforms = e.params.get("branches_platforms") if str(e.primitive) == "cond" else None
      if platforms is not None:
        index = next(i for i, ps in enumerate(platforms) if ps is None or platform in ps)
        walk(e.params["branches"][index].jaxpr.eqns)
      elif str(e.primitive) != "platform_index":
        out.append(e)

  walk(jax.make_jaxpr(fn)(*args).jaxpr.eqns)
  return out


def _primitives(x, w, platform="cpu"):
  fn = lambda a, b: _shift(a, b, (1, 1), "VALID")  # noqa: E731
  return {str(e.primitive) for e in _eqns(fn, x, w, platform=platform)}


def test_shifted_path_only_on_cpu():
  x = jnp.ones((1, 8, 8, 3), jnp.float32)
  w = jnp.ones((3, 3, 3, 2), jnp.float32)
  assert "conv_general_dilated" not in _primitives(x, w)
  for platform in ("cuda", "rocm", "tpu"):
    assert "conv_general_dilated" in _primitives(x, w, platform)


@pytest.mark.parametrize("drop_in, window, c_in", [
    ("shift_conv", 5, 3), ("row_conv", 3, 16), ("winograd_conv", 3, 16)])
def test_lowering_platform_chooses_the_formulation(drop_in, window, c_in):
  # One trace, lowered for each platform: the CPU lowering has the CPU formulation (no 2-D
  # convolution), the GPU and TPU lowerings lax's convolution only; whatever jax.default_backend()
  # says on the tracing host. Shapes only: nothing runs.
  x = jax.ShapeDtypeStruct((2, 12, 10, c_in), jnp.float32)
  w = jax.ShapeDtypeStruct((window, window, c_in, 6), jnp.float32)
  fn = getattr(conv, drop_in)
  traced = jax.jit(lambda a, b: jax.grad(lambda a, b: jnp.sum(fn(
      a, b, (1, 1), "SAME", dimension_numbers=DN) ** 2), argnums=(0, 1))(a, b)).trace(x, w)
  for platform in ("cpu", "cuda", "tpu"):
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    two_d = sum("stablehlo.convolution" in line and line.endswith("-> tensor<2x12x10x6xf32>")
                for line in text.splitlines())  # the forward 2-D convolution
    assert (two_d == 0) == (platform == "cpu"), (platform, two_d)


_SHARDED_SCRIPT = """
import numpy as np, jax, jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from cbir_jax.models import conv
DN = ("NHWC", "HWIO", "NHWC")
assert len(jax.devices()) == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
x = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((16, 12, 10, 3)),
                               jnp.float32), NamedSharding(mesh, P("data")))
w = jnp.full((5, 5, 3, 6), 0.1, jnp.float32)
def loss(w, x, fn):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return jnp.sum(jnp.tanh(fn(x, w, (1, 1), "VALID", dimension_numbers=dn)) ** 2)
grad = jax.jit(jax.grad(lambda w, x: loss(w, x, conv.shift_conv)))
assert "all-gather" not in grad.lower(w, x).compile().as_text()
want = jax.grad(lambda w, x: loss(w, x, lax.conv_general_dilated))(w, np.asarray(x))
np.testing.assert_allclose(np.asarray(grad(w, x)), np.asarray(want), rtol=1e-5)
print("OK")
"""


def _run_on_8_devices(script: str) -> None:
  """Runs `script` in a subprocess with 8 forced host devices; it must print OK."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]


def test_batch_sharded_over_8_devices_stays_sharded():
  # Blocks of rows, not images, per loop step: no all-gather of a batch-sharded input.
  _run_on_8_devices(_SHARDED_SCRIPT)


# --- row_conv: 2-D convolutions as 1-D convolutions over stacked row windows. ---


def _rows(x, w, strides, padding, rhs_dilation=None):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return conv.row_conv(x, w, strides, padding, rhs_dilation=rhs_dilation, dimension_numbers=dn)


def _lax_dilated(x, w, strides, padding, rhs_dilation=None):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=rhs_dilation,
                                  dimension_numbers=DN)


def _check_vjp(fn, ref, x, w, tol, rng):
  """fn(x, w)'s value and both gradients (eager and jitted VJP, random cotangent) equal ref's to
  `tol` times the largest magnitude of each."""
  want, vjp_want = jax.vjp(ref, x, w)
  got, vjp_got = jax.vjp(fn, x, w)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                             atol=tol * float(jnp.max(jnp.abs(want))))
  dy = jnp.asarray(rng.standard_normal(want.shape, np.float32))
  jitted = jax.jit(lambda a, b, g: jax.vjp(fn, a, b)[1](g))
  for grads in (vjp_got(dy), jitted(x, w, dy)):
    for a, b in zip(grads, vjp_want(dy)):
      assert a.shape == b.shape
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                 atol=tol * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("shape,window,c_out,strides,padding,dilation", [
    ((2, 13, 17, 16), (5, 5), 6, (1, 1), "VALID", None),
    ((3, 9, 8, 16), (3, 2), 20, (2, 1), "SAME", None),
    ((1, 11, 10, 17), (3, 3), 5, (2, 3), ((1, 2), (0, 1)), None),
    ((2, 12, 11, 16), (3, 3), 7, (1, 2), "SAME", (2, 1)),
    ((2, 12, 11, 16), (1, 3), 7, (1, 1), "SAME", None),
    ((2, 12, 11, 18), (4, 1), 7, (3, 1), ((2, 0), (1, 1)), None),
    ((2, 7, 9, 16), (3, 3), 4, (2, 2), ((0, 3), (2, 0)), (1, 2)),
])
def test_row_conv_values_and_gradients_match_lax(shape, window, c_out, strides, padding,
                                                 dilation):
  rng = np.random.default_rng(sum(shape) + c_out)
  x = jnp.asarray(rng.standard_normal(shape, np.float32))
  w = jnp.asarray(rng.standard_normal(window + (shape[-1], c_out), np.float32))
  fn = lambda a, b: _rows(a, b, strides, padding, dilation)  # noqa: E731
  assert _conv_ranks(fn, x, w) == [1]
  _check_vjp(fn, lambda a, b: _lax_dilated(a, b, strides, padding, dilation), x, w, 1e-5, rng)


def _conv_ranks(fn, x, w, platform="cpu"):
  """Spatial ranks of the convolutions in fn's jaxpr as lowered for `platform` (2 for lax's 2-D
  conv, 1 for row_conv)."""
  ranks = []
  for eqn in _eqns(fn, x, w, platform=platform):
    if str(eqn.primitive) == "conv_general_dilated":
      ranks.append(eqn.invars[0].aval.ndim - 2)
  return ranks


def test_row_conv_integer_valued_inputs_are_exact():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.integers(-3, 4, (2, 10, 12, 16)).astype(np.float32))
  w = jnp.asarray(rng.integers(-2, 3, (5, 3, 16, 24)).astype(np.float32))
  assert _conv_ranks(lambda a, b: _rows(a, b, (1, 1), "SAME"), x, w) == [1]
  np.testing.assert_array_equal(np.asarray(_rows(x, w, (1, 1), "SAME")),
                                np.asarray(_lax(x, w, (1, 1), "SAME")))


def test_row_conv_falls_back_to_lax_outside_its_range():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 16), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 8), np.float32))
  rows = lambda a, b: _rows(a, b, (1, 1), "SAME")  # noqa: E731
  assert _conv_ranks(rows, x, w) == [1]
  few = x[..., :conv.ROW_MIN_CHANNELS - 1], w[:, :, :conv.ROW_MIN_CHANNELS - 1]
  assert _conv_ranks(rows, *few) == [2]  # e.g. AlexNet's 3-channel conv1
  assert _conv_ranks(rows, x, w[:1, :1]) == [2]  # 1x1: lax (a dot)
  assert _conv_ranks(lambda a, b: _rows(a, b, (1, 1), ((-1, 0), (0, 0))), x, w) == [2]
  assert _conv_ranks(lambda a, b: _rows(a, b, (1, 1), "VALID"), x[:, :2], w) == [2]  # too short
  assert _conv_ranks(lambda a, b: _rows(a, b, (1, 1), ((0, 1), (0, 0))), x[:, :2], w) == [1]
  assert _conv_ranks(lambda a, b: _rows(a.astype(jnp.float16), b.astype(jnp.float16), (1, 1),
                                        "SAME"), x, w) == [2]
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  pads = ((1, 1), (1, 1))
  dilated = lambda a, b: conv.row_conv(a, b, (1, 1), pads, lhs_dilation=(2, 1),  # noqa: E731
                                       dimension_numbers=dn)
  assert _conv_ranks(dilated, x, w) == [2]
  np.testing.assert_array_equal(
      np.asarray(dilated(x, w)),
      np.asarray(lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=(2, 1),
                                          dimension_numbers=DN)))
  grouped = lambda a, b: conv.row_conv(a, b[:, :, :8], (1, 1), "SAME",  # noqa: E731
                                       dimension_numbers=dn, feature_group_count=2)
  assert _conv_ranks(grouped, x, w) == [2]
  for platform in ("cuda", "tpu"):  # GPUs/TPUs keep lax's conv
    assert _conv_ranks(lambda a, b: _rows(a, b, (1, 1), "SAME"), x, w, platform) == [2]


def test_row_conv_flax_conv_jit_and_vmap():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((3, 2, 12, 12, 16), np.float32))
  plain = nn.Conv(20, (3, 5), strides=(2, 1), padding="SAME")
  rows = nn.Conv(20, (3, 5), strides=(2, 1), padding="SAME", conv_general_dilated=conv.row_conv)
  params = plain.init(jax.random.PRNGKey(0), x[0])
  assert jax.tree_util.tree_map(jnp.shape, rows.init(jax.random.PRNGKey(0), x[0])) == \
      jax.tree_util.tree_map(jnp.shape, params)
  want = jax.vmap(lambda a: plain.apply(params, a))(x)
  got = jax.jit(jax.vmap(lambda a: rows.apply(params, a)))(x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


_ROWS_SHARDED_SCRIPT = """
import numpy as np, jax, jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from cbir_jax.models import conv
DN = ("NHWC", "HWIO", "NHWC")
assert len(jax.devices()) == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
rng = np.random.default_rng(0)
x = jax.device_put(jnp.asarray(rng.standard_normal((16, 11, 9, 16)), jnp.float32),
                   NamedSharding(mesh, P("data")))
w = jnp.asarray(rng.standard_normal((3, 3, 16, 24)) * 0.1, jnp.float32)
def loss(w, x, fn):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return jnp.sum(jnp.tanh(fn(x, w, (1, 1), "SAME", dimension_numbers=dn)) ** 2)
grad = jax.jit(jax.grad(lambda w, x: loss(w, x, conv.row_conv), argnums=(0, 1)))
text = grad.lower(w, x).compile().as_text()
assert "all-gather" not in text and "all-to-all" not in text, text
got = grad(w, x)
assert got[1].sharding.spec == P("data"), got[1].sharding
want = jax.grad(lambda w, x: loss(w, x, lax.conv_general_dilated), argnums=(0, 1))(
    w, np.asarray(x))
for a, b in zip(got, want):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * np.abs(b).max())
print("OK")
"""


def test_row_conv_batch_sharded_over_8_devices_stays_sharded():
  # The 1-D batch is (batch, output rows), batch-major: no all-gather of a batch-sharded input.
  _run_on_8_devices(_ROWS_SHARDED_SCRIPT)


# --- winograd_conv: stride-1 3x3 and 5x5 convolutions by Winograd F(m x m, r x r) tiles. ---


def _wino(x, w, padding, **kwargs):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return conv.winograd_conv(x, w, (1, 1), padding, dimension_numbers=dn, **kwargs)


def _winograd_path(fn, *args, platform="cpu") -> bool:
  """Whether fn's jaxpr, as lowered for `platform`, runs its convolution as Winograd (a batched
  dot_general, no conv)."""
  eqns = _eqns(fn, *args, platform=platform)
  calls = [e for e in eqns if "custom_vjp" in str(e.primitive)]
  return bool(calls) and not any(str(e.primitive) == "conv_general_dilated" for e in eqns)


@pytest.mark.parametrize("m,r", [(2, 3), (3, 5), (4, 3), (2, 5)])
def test_winograd_matrices_are_exact(m, r):
  # A^T [(G g) * (B^T d)] is the correlation of d with g, exactly (rational arithmetic).
  a_t, b_t, g = conv.winograd_matrices(m, r)
  n = m + r - 1
  assert (len(a_t), len(a_t[0]), len(b_t), len(b_t[0]), len(g), len(g[0])) == (m, n, n, n, n, r)
  assert all(v.denominator == 1 for row in b_t for v in row)  # B^T rows scaled to integers
  rng = np.random.default_rng(m * 10 + r)
  for _ in range(3):
    taps = [fractions.Fraction(int(v)) for v in rng.integers(-9, 10, r)]
    data = [fractions.Fraction(int(v)) for v in rng.integers(-9, 10, n)]
    gg = [sum(a * b for a, b in zip(row, taps)) for row in g]
    bd = [sum(a * b for a, b in zip(row, data)) for row in b_t]
    got = [sum(a * u * v for a, u, v in zip(row, gg, bd)) for row in a_t]
    assert got == [sum(taps[k] * data[i + k] for k in range(r)) for i in range(m)]


@pytest.mark.parametrize("shape,window,c_out,padding", [
    ((2, 13, 13, 16), 3, 24, "SAME"),                  # AlexNet conv3-conv5 (13x13, pad 1)
    ((3, 27, 26, 20), 5, 9, ((2, 2), (2, 2))),          # AlexNet conv2 (pad 2), odd width
    ((2, 9, 8, 16), 5, 4, "VALID"),
    ((1, 5, 7, 17), 3, 5, ((0, 2), (1, 0))),            # asymmetric, partial last tiles
    ((2, 3, 11, 16), 3, 6, ((0, 0), (2, 2))),           # one output row
    ((2, 6, 5, 16), 5, 3, ((4, 0), (0, 4))),            # pads up to r - 1
    ((1, 4, 6, 16), 3, 2, ((5, 1), (0, 3))),            # and beyond
])
def test_winograd_conv_values_and_gradients_match_lax(shape, window, c_out, padding):
  rng = np.random.default_rng(sum(shape) + c_out)
  x = jnp.asarray(rng.standard_normal(shape, np.float32))
  w = jnp.asarray(rng.standard_normal((window, window, shape[-1], c_out), np.float32))
  fn = lambda a, b: _wino(a, b, padding)  # noqa: E731
  assert _winograd_path(fn, x, w)
  # Relative to the largest magnitude: F(2x2, 3x3) rounds like lax, F(3x3, 5x5) ~10x more.
  _check_vjp(fn, lambda a, b: _lax(a, b, (1, 1), padding), x, w,
             1e-5 if window == 3 else 5e-5, rng)


def test_winograd_conv_integer_valued_inputs_3x3_are_exact():
  # F(2x2, 3x3)'s transforms use only 0, +-1 and 1/2: small integers stay exact.
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.integers(-3, 4, (2, 10, 11, 16)).astype(np.float32))
  w = jnp.asarray(rng.integers(-2, 3, (3, 3, 16, 8)).astype(np.float32))
  np.testing.assert_array_equal(np.asarray(_wino(x, w, "SAME")),
                                np.asarray(_lax(x, w, (1, 1), "SAME")))


def test_winograd_conv_falls_back_outside_its_range():
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 16), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 8), np.float32))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  assert _winograd_path(lambda a, b: _wino(a, b, "SAME"), x, w)
  assert _winograd_path(lambda a, b: _wino(a, b, "SAME"), x, jnp.tile(w, (2, 2, 1, 1))[:5, :5])

  def check(fn, *args, ranks, platform="cpu"):  # not Winograd; row_conv (rank 1) or lax (2)
    assert not _winograd_path(fn, *args, platform=platform)
    assert _conv_ranks(fn, *args, platform=platform) == ranks

  check(lambda a, b: conv.winograd_conv(a, b, (2, 2), "SAME", dimension_numbers=dn), x, w,
        ranks=[1])  # strided: row_conv
  check(lambda a, b: conv.winograd_conv(a, b, (1, 1), "SAME", rhs_dilation=(2, 2),
                                        dimension_numbers=dn), x, w, ranks=[1])
  check(lambda a, b: _wino(a, b, "SAME"), x, w[:, :2], ranks=[1])  # 3x2 window
  check(lambda a, b: _wino(a, b, "SAME"), x, jnp.tile(w, (3, 3, 1, 1))[:7, :7], ranks=[1])
  check(lambda a, b: _wino(a, b, "SAME"), x[..., :conv.ROW_MIN_CHANNELS - 1],
        w[:, :, :conv.ROW_MIN_CHANNELS - 1], ranks=[2])  # few channels: lax
  check(lambda a, b: _wino(a, b, ((-1, 0), (0, 0))), x, w, ranks=[2])
  check(lambda a, b: _wino(a, b, "VALID"), x[:, :2], w, ranks=[2])  # shorter than the window
  check(lambda a, b: _wino(a.astype(jnp.float16), b.astype(jnp.float16), "SAME"), x, w,
        ranks=[2])
  for strides, padding in (((2, 2), "SAME"), ((1, 1), ((-1, 0), (0, 0)))):
    np.testing.assert_allclose(
        np.asarray(conv.winograd_conv(x, w, strides, padding, dimension_numbers=dn)),
        np.asarray(_lax(x, w, strides, padding)), rtol=1e-5, atol=1e-5)
  for platform in ("cuda", "tpu"):  # GPUs/TPUs keep lax's conv
    check(lambda a, b: _wino(a, b, "SAME"), x, w, ranks=[2], platform=platform)


def _check_second_order(plain, fast, params, x, tolerance):
  """Gradients of a gradient norm through `fast` equal those through `plain` (to `tolerance`
  times the largest magnitude): the custom backward passes are themselves differentiable."""
  def grad_norm(module, p):
    g = jax.grad(lambda q: jnp.sum(jnp.tanh(module.apply(q, x))))(p)
    return sum(jnp.sum(v ** 2) for v in jax.tree_util.tree_leaves(g))
  want = jax.grad(lambda p: grad_norm(plain, p))(params)
  got = jax.jit(jax.grad(lambda p: grad_norm(fast, p)))(params)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                               atol=tolerance * float(jnp.max(jnp.abs(b))))


def test_winograd_conv_flax_conv_jit_vmap_and_second_order():
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.standard_normal((3, 2, 11, 12, 16), np.float32))
  plain = nn.Conv(20, (5, 5), padding="SAME")
  wino = nn.Conv(20, (5, 5), padding="SAME", conv_general_dilated=conv.winograd_conv)
  params = plain.init(jax.random.PRNGKey(0), x[0])
  assert jax.tree_util.tree_map(jnp.shape, wino.init(jax.random.PRNGKey(0), x[0])) == \
      jax.tree_util.tree_map(jnp.shape, params)
  want = jax.vmap(lambda a: plain.apply(params, a))(x)
  got = jax.jit(jax.vmap(lambda a: wino.apply(params, a)))(x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                             atol=5e-5 * float(jnp.max(jnp.abs(want))))
  # Reverse over reverse (the custom backward pass is itself differentiable).
  _check_second_order(plain, wino, params, x[0], 1e-4)


def test_winograd_conv_batch_sharded_over_8_devices_stays_sharded():
  # Tiles are batch-major on the dot's row axis: no all-gather of a batch-sharded input.
  script = _ROWS_SHARDED_SCRIPT.replace("conv.row_conv", "conv.winograd_conv").replace(
      "(3, 3, 16, 24)", "(5, 5, 16, 24)")
  assert "winograd_conv" in script and "(5, 5, 16, 24)" in script
  _run_on_8_devices(script)
