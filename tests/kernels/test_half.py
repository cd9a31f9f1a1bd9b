"""kernels.half: bfloat16 scan + float32 re-scoring equals the float32 search bit for bit."""

import numpy as np
import pytest

from cbir_jax.kernels import euclidean_topk, ffi, half
from tests.kernels import reference

native = pytest.mark.skipif(not ffi.available(), reason="native extension not built/disabled")


def _same_as_float32(queries, x, k):
  db = half.HalfDatabase.build(x)
  d, i, rescored = half.half_topk(queries, db, k, return_rescored=True)
  want_d, want_i = euclidean_topk(queries, x, k)
  np.testing.assert_array_equal(np.asarray(d), np.asarray(want_d))
  np.testing.assert_array_equal(np.asarray(i), np.asarray(want_i))
  return np.asarray(d), np.asarray(i), rescored


def test_bounds_cover_the_rounding(rng):
  x = (rng.standard_normal((500, 37)) * rng.uniform(1e-3, 1e3, (500, 1))).astype(np.float32)
  db = half.HalfDatabase.build(x)
  back = np.asarray(db.half).view(np.uint16).astype(np.uint32) << 16
  back = back.view(np.float32).astype(np.float64)
  assert (np.linalg.norm(x - back, axis=1) <= np.asarray(db.err)).all()
  assert (np.linalg.norm(back, axis=1) <= np.asarray(db.norm)).all()
  assert (np.asarray(db.err) <= 2.0**-8 * np.linalg.norm(x, axis=1) * 1.0001).all()


@native
@pytest.mark.parametrize("q", [1, 3, 16, 17])
@pytest.mark.parametrize("d", [5, 32, 130])
def test_random_data_equals_float32(rng, q, d):
  x = rng.standard_normal((3_001, d)).astype(np.float32)
  queries = rng.standard_normal((q, d)).astype(np.float32)
  _, _, rescored = _same_as_float32(queries, x, 10)
  if q <= ffi.GEMV_MAX_Q:
    assert 0 < rescored < 3_001 * q  # the bound excluded rows, and something was re-scored


@native
def test_adversarial_near_ties(rng):
  # Rows that bfloat16 cannot tell apart: a base vector plus perturbations in float32's last
  # bits, their order decided only in float32; some rows are exact duplicates (index order),
  # and a far cloud fills the rest.
  d = 24
  base = rng.standard_normal(d).astype(np.float32)
  near = np.repeat(base[None], 400, axis=0)
  near += (rng.integers(-3, 4, size=near.shape) * np.abs(base) * 2.0**-20).astype(np.float32)
  near[100:110] = near[7]
  far = rng.standard_normal((2_000, d)).astype(np.float32) * 3 + 10
  x = np.concatenate([far[:900], near, far[900:]])
  x = x[rng.permutation(len(x))]
  queries = np.stack([base, base + np.float32(2.0**-9), -base, near[5] * 1.001]).astype(
      np.float32)
  for k in (1, 10, 400, len(x)):
    _same_as_float32(queries, x, k)
  # Queries from the far cloud: the float64 reference agrees (distances well separated there).
  far_q = far[:3] + np.float32(0.5)
  d_, i_, _ = _same_as_float32(far_q, x, 10)
  ref_d, _ = reference.rank(reference.l2(far_q, x), 10)
  np.testing.assert_allclose(d_, ref_d, rtol=1e-4)


@native
def test_rows_beyond_bfloat16s_range_and_tiny_values(rng):
  x = rng.standard_normal((300, 8)).astype(np.float32)
  x[3] *= np.float32(3e38)  # rounds to bfloat16 inf: its bound excludes nothing
  x[4] = np.float32(1e-40)  # subnormal
  queries = rng.standard_normal((2, 8)).astype(np.float32)
  _same_as_float32(queries, x, 300)


def test_k_check_and_fallback_without_native(monkeypatch, rng):
  x = rng.standard_normal((20, 4)).astype(np.float32)
  db = half.HalfDatabase.build(x)
  with pytest.raises(ValueError, match=r"\[1, 20\]"):
    half.half_topk(x[:1], db, 21)
  monkeypatch.setenv("CBIR_JAX_NATIVE", "0")
  d, i, rescored = half.half_topk(x[:2], db, 3, return_rescored=True)
  assert rescored == -1
  np.testing.assert_array_equal(np.asarray(i)[:, 0], [0, 1])
