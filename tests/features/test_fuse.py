"""fuse: plain concatenation, per-part L2 normalisation and weights, validation."""

import numpy as np
import pytest

from cbir_jax.features.fuse import fuse


def test_plain_concatenation():
  a = np.arange(6, dtype=np.float32).reshape(3, 2)
  b = np.ones((3, 4), np.float64)
  out = fuse([a, b])
  assert out.dtype == np.float32 and out.shape == (3, 6)
  np.testing.assert_array_equal(out, np.concatenate([a, b], 1))


def test_l2_and_weights():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(5, 3)), 100 * rng.normal(size=(5, 7))
  a[2] = 0.0
  out = fuse([a, b], normalize="l2", weights=[2.0, 0.5])
  np.testing.assert_allclose(np.linalg.norm(out[:, :3], axis=1), [2, 2, 0, 2, 2], rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(out[:, 3:], axis=1), 0.5, rtol=1e-6)
  np.testing.assert_allclose(out[:, 3:], 0.5 * b / np.linalg.norm(b, axis=1, keepdims=True),
                             rtol=1e-6)
  np.testing.assert_allclose(fuse([a, b], weights=[1.0, 3.0])[:, 3:], 3 * b, rtol=1e-6)


def test_errors():
  a = np.zeros((3, 2))
  with pytest.raises(ValueError, match="part 1 has 4"):
    fuse([a, np.zeros((4, 2))])
  with pytest.raises(ValueError, match="normalize"):
    fuse([a], normalize="l1")
  with pytest.raises(ValueError, match="one value per part"):
    fuse([a, a], weights=[1.0])
  with pytest.raises(ValueError, match=">= 0"):
    fuse([a, a], weights=[1.0, -1.0])
  with pytest.raises(ValueError, match="non-empty"):
    fuse([])
  with pytest.raises(ValueError, match="part 0"):
    fuse([np.zeros(3)])
