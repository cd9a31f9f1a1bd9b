"""Tests for cbir_jax.models.pooling: adaptive_avg_pool against a float64 NumPy reference,
max_pool (forward and gradient) against flax.linen.max_pool."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models.pooling import adaptive_avg_pool, max_pool


def _reference(x: np.ndarray, out: tuple[int, int]) -> np.ndarray:
  """PyTorch's definition: bin i covers [floor(i*n/o), ceil((i+1)*n/o))."""
  b, h, w, c = x.shape
  y = np.zeros((b, *out, c))
  for i in range(out[0]):
    for j in range(out[1]):
      hs, he = (i * h) // out[0], math.ceil((i + 1) * h / out[0])
      ws, we = (j * w) // out[1], math.ceil((j + 1) * w / out[1])
      y[:, i, j] = x[:, hs:he, ws:we].mean(axis=(1, 2))
  return y


@pytest.mark.parametrize("hw,out", [((6, 6), (6, 6)), ((13, 13), (6, 6)), ((12, 18), (6, 6)),
                                    ((3, 7), (6, 6)), ((17, 11), (5, 5)), ((1, 1), (2, 3))])
def test_matches_reference(hw, out):
  x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
  np.testing.assert_allclose(adaptive_avg_pool(x, out), _reference(x.astype(np.float64), out),
                             rtol=1e-5, atol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="output_size"):
    adaptive_avg_pool(np.zeros((1, 4, 4, 1)), (0, 2))
  with pytest.raises(ValueError, match="shape"):
    adaptive_avg_pool(np.zeros((4, 4, 1)), (2, 2))


# max_pool: forward bitwise equal to nn.max_pool, gradient equal to jax.grad(nn.max_pool).
# (shape, window, strides, padding): the models' pools (AlexNet/Inception 3x3/2 VALID, ResNet
# 3x3/2 pad 1, LeNet 2x2/2) on odd and even sides, plus SAME and a non-square case.
_POOL_CASES = [
    ((2, 13, 13, 3), (3, 3), (2, 2), "VALID"),
    ((2, 14, 11, 4), (3, 3), (2, 2), "VALID"),
    ((2, 12, 15, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 9, 9, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 9, 8, 3), (2, 2), (2, 2), "VALID"),
    ((1, 7, 6, 2), (3, 3), (1, 1), "SAME"),
    ((1, 10, 9, 2), (2, 3), (3, 2), ((0, 2), (1, 0))),
]


def _pools(window, strides, padding):
  ours = lambda x: max_pool(x, window, strides, padding)
  ref = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  return ours, ref


def _vjp(fn, x, dy):
  return jax.vjp(fn, x)[1](dy)[0]


@pytest.mark.parametrize("kind", ["random", "ties", "constant"])
@pytest.mark.parametrize("shape,window,strides,padding", _POOL_CASES)
def test_max_pool_matches_flax(shape, window, strides, padding, kind):
  rng = np.random.default_rng(sum(shape))
  if kind == "random":
    x = rng.normal(size=shape).astype(np.float32)
  elif kind == "ties":  # Integer values in {0, 1, 2}: most windows hold several maxima.
    x = rng.integers(0, 3, size=shape).astype(np.float32)
  else:
    x = np.full(shape, -1.5, np.float32)
  ours, ref = _pools(window, strides, padding)
  y = ref(x)
  np.testing.assert_array_equal(ours(x), y)
  assert ours(x).dtype == y.dtype
  # Integer-valued dy: sums of overlapping windows are exact in any order.
  dy = rng.integers(1, 9, size=y.shape).astype(np.float32)
  np.testing.assert_array_equal(_vjp(ours, x, dy), _vjp(ref, x, dy))
  dy = rng.normal(size=y.shape).astype(np.float32)
  np.testing.assert_allclose(_vjp(ours, x, dy), _vjp(ref, x, dy), rtol=1e-6, atol=1e-6)


def test_max_pool_first_maximum_gets_the_gradient():
  x = np.zeros((1, 3, 3, 1), np.float32)  # All tied: row-major first element wins.
  g = jax.grad(lambda x: max_pool(x, (3, 3), (2, 2), "VALID").sum())(x)
  expected = np.zeros_like(x)
  expected[0, 0, 0, 0] = 1
  np.testing.assert_array_equal(g, expected)


def test_max_pool_minus_inf_and_nan():
  x = np.full((1, 4, 4, 1), -np.inf, np.float32)
  x[0, 3, 3, 0] = 1.0
  for padding in ("VALID", ((1, 1), (1, 1))):
    ours, ref = _pools((3, 3), (2, 2), padding)
    y = ref(x)
    np.testing.assert_array_equal(ours(x), y)
    dy = np.ones(y.shape, np.float32)
    np.testing.assert_array_equal(_vjp(ours, x, dy), _vjp(ref, x, dy))
  # NaN: the forward pass is NaN like nn.max_pool; that window passes no gradient.
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  x[0, 0, 1, 0] = np.nan
  ours, ref = _pools((3, 3), (1, 1), "VALID")
  np.testing.assert_array_equal(ours(x), ref(x))
  g = _vjp(ours, x, np.ones((1, 2, 2, 1), np.float32))[0, ..., 0]
  np.testing.assert_array_equal(g, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]])


def test_max_pool_jit_and_vmap():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 4, size=(3, 2, 11, 11, 5)).astype(np.float32)
  ours, ref = _pools((3, 3), (2, 2), ((1, 1), (1, 1)))
  loss = lambda fn: (lambda x: (fn(x) * jnp.arange(1.0, 6.0)).sum())
  for batched in (lambda f: jax.vmap(f), lambda f: jax.vmap(jax.vmap(f))):
    np.testing.assert_array_equal(jax.jit(batched(ours))(x), batched(ref)(x))
    np.testing.assert_array_equal(jax.jit(batched(jax.grad(loss(ours))))(x),
                                  batched(jax.grad(loss(ref)))(x))
  np.testing.assert_array_equal(jax.jit(jax.grad(loss(ours)))(x[0]),
                                jax.grad(loss(ref))(x[0]))


def test_max_pool_bad_arguments():
  x = np.zeros((1, 4, 4, 1), np.float32)
  with pytest.raises(ValueError, match="shape"):
    max_pool(np.zeros((4, 4)), (2, 2), (2, 2))
  with pytest.raises(ValueError, match="window"):
    max_pool(x, (0, 2), (2, 2))
  with pytest.raises(ValueError, match="padding"):
    max_pool(x, (2, 2), (2, 2), "FULL")
  with pytest.raises(ValueError, match="padding"):
    max_pool(x, (2, 2), (2, 2), ((1, -1), (0, 0)))
