"""Tests for cbir_jax.models.pooling.adaptive_avg_pool against a float64 NumPy reference."""

import math

import numpy as np
import pytest

from cbir_jax.models.pooling import adaptive_avg_pool


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
