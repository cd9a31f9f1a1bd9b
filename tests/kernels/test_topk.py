"""The selection primitives under the kernels: smallest_k and the hierarchical smallest_windows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.kernels import euclidean_topk, hamming_topk, topk
from tests.kernels import reference


def _reference_windows(minima: np.ndarray, k: int) -> np.ndarray:
  """Positions of the k windows ranked first by (minimum, position), ascending (float64-free:
  integer keys, stable sort)."""
  order = np.argsort(minima, axis=-1, kind="stable")[..., :k]
  return np.sort(order, axis=-1)


@pytest.mark.parametrize("m", [12, 64, 160, 512, 1000, 2048, 4096])
@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("levels_of", ["ties", "distinct"])
def test_smallest_windows_matches_flat_ranking(m, k, levels_of):
  rng = np.random.default_rng(m * 100 + k)
  high = 4 if levels_of == "ties" else 2**30
  minima = rng.integers(0, high, size=(5, m)).astype(np.int32)
  got = np.asarray(topk.smallest_windows(jnp.asarray(minima), k))
  np.testing.assert_array_equal(got, _reference_windows(minima, k))


def test_smallest_windows_uses_levels_and_stays_exact_with_pad_keys():
  # 2048 windows -> levels of 256 and 32 group minima for k = 10; excluded windows (PAD_KEY)
  # in whole groups and scattered must never displace a real one.
  rng = np.random.default_rng(0)
  minima = rng.integers(0, 50, size=(4, 2048)).astype(np.int32)
  minima[:, :700] = topk.PAD_KEY
  minima[:, 1000::3] = topk.PAD_KEY
  minima[1] = topk.PAD_KEY
  minima[1, [5, 900, 2047]] = [7, 7, 3]
  got = np.asarray(jax.jit(topk.smallest_windows, static_argnums=1)(jnp.asarray(minima), 10))
  np.testing.assert_array_equal(got, _reference_windows(minima, 10))


def test_smallest_windows_composes_with_vmap():
  rng = np.random.default_rng(1)
  minima = rng.integers(0, 3, size=(3, 2, 1024)).astype(np.int32)
  got = jax.vmap(lambda m: topk.smallest_windows(m, 4))(jnp.asarray(minima))
  np.testing.assert_array_equal(np.asarray(got), _reference_windows(minima, 4))


@pytest.mark.parametrize("k", [1, 5, 16, 17, 64, 65])
def test_smallest_k_ties_to_lower_position(k):
  rng = np.random.default_rng(k)
  keys = rng.integers(0, 6, size=(4, 300)).astype(np.int32)
  got_keys, got_pos = topk.smallest_k(jnp.asarray(keys), k)
  order = np.argsort(keys, axis=-1, kind="stable")[:, :k]
  np.testing.assert_array_equal(np.asarray(got_pos), order)
  np.testing.assert_array_equal(np.asarray(got_keys), np.take_along_axis(keys, order, -1))


@pytest.mark.parametrize("k", [1, 10, 40])
def test_kernels_exact_through_the_levels(k):
  # Chunks of 4096 rows in windows of 8 or 16 (512 -> 64 -> 8 or 256 -> 32 group minima) and
  # of 8192 codes in windows of 32 (256 -> 32): integer data full of ties, n odd so the last
  # chunk overlaps.
  rng = np.random.default_rng(k)
  n = 20_001
  database = rng.integers(-1, 2, size=(n, 6)).astype(np.float32)
  database[n // 2:] = database[: n - n // 2]  # duplicated rows
  queries = rng.integers(-1, 2, size=(4, 6)).astype(np.float32)
  ref_d, ref_i = reference.rank(reference.l2(queries, database), k)
  for window in (8, 16):  # window-strided product layout (<= 8) and contiguous (16)
    d, i = euclidean_topk(queries, database, k, chunk_size=4096, window=window)
    np.testing.assert_array_equal(np.asarray(i), ref_i)
    np.testing.assert_array_equal(np.asarray(d), ref_d)

  codes = rng.integers(0, 2**32, size=(n, 1), dtype=np.uint32) & np.uint32(0x1F)
  query_codes = codes[:3]
  ref_d, ref_i = reference.rank(reference.hamming(query_codes, codes), k)
  for method in ("popcount", "gemm"):
    d, i = hamming_topk(query_codes, codes, k, chunk_size=8192, window=32, method=method)
    np.testing.assert_array_equal(np.asarray(i), ref_i)
    np.testing.assert_array_equal(np.asarray(d), ref_d)
