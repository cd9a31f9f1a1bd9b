"""euclidean_topk / euclidean_distances vs a float64 NumPy reference and FAISS IndexFlatL2.

Every search test runs both implementations: method="auto" (the native FFI kernel on this CPU
when it is built; tests/kernels/test_ffi.py checks that it is) and method="jax".
"""

import faiss
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cbir_jax.kernels import euclidean, euclidean_distances, euclidean_topk, topk
from tests.kernels import reference

METHODS = pytest.mark.parametrize("method", ["auto", "jax"])


@pytest.fixture(scope="module")
def float_data():
  rng = np.random.default_rng(20261128)  # module fixture: a fixed seed (tests print theirs)
  queries = rng.normal(size=(5, 13)).astype(np.float32)
  database = rng.normal(size=(1001, 13)).astype(np.float32)
  database[500] = database[17]  # a duplicated row
  queries[2] = database[3]      # a query equal to a database row
  return queries, database


@METHODS
@pytest.mark.parametrize("k,chunk_size,window", [(1, 128, 32), (10, 128, 4), (10, None, 32),
                                                 (1001, 300, 32)])
def test_random_float_vs_float64_reference(method, float_data, k, chunk_size, window):
  queries, database = float_data
  d, i = euclidean_topk(queries, database, k, chunk_size=chunk_size, window=window, method=method)
  assert d.shape == (5, k) and d.dtype == jnp.float32 and i.dtype == jnp.int32
  d, i = np.asarray(d), np.asarray(i)
  full = reference.l2(queries, database)
  ref_d, ref_i = reference.rank(full, k)
  np.testing.assert_allclose(d, ref_d, rtol=1e-5, atol=1e-4)
  # Returned indices have the returned distances; order matches wherever gaps exceed rounding.
  np.testing.assert_allclose(np.take_along_axis(full, i, 1), d, rtol=1e-5, atol=1e-4)
  clear = np.abs(np.diff(full[np.arange(5)[:, None], ref_i], axis=1)) > 1e-3
  clear = np.concatenate([clear, np.ones((5, 1), bool)], 1) & np.concatenate(
      [np.ones((5, 1), bool), clear], 1)
  np.testing.assert_array_equal(i[clear], ref_i[clear])
  if k == 1001:
    np.testing.assert_array_equal(np.sort(i, 1), np.broadcast_to(np.arange(1001), (5, 1001)))
  assert i[2, 0] == 3 and d[2, 0] < 1e-4  # |q|^2 + |x|^2 - 2 q.x rounds, like FAISS


@METHODS
def test_matches_faiss_index_flat_l2(method, float_data):
  queries, database = float_data
  index = faiss.IndexFlatL2(database.shape[1])
  index.add(database)
  fd, fi = index.search(queries, 10)
  d, i = euclidean_topk(queries, database, 10, chunk_size=128, window=4, method=method)
  np.testing.assert_allclose(np.asarray(d), fd, rtol=1e-5, atol=1e-4)
  full = reference.l2(queries, database)
  np.testing.assert_allclose(np.take_along_axis(full, fi, 1), np.asarray(d), rtol=1e-5, atol=1e-4)


@METHODS
@pytest.mark.parametrize("chunk_size,window", [(64, 4), (517, 32), (100, 1)])
def test_heavy_ties_integer_data_exact(method, chunk_size, window, rng):
  database = rng.integers(0, 3, size=(517, 4)).astype(np.float32)  # 81 distinct rows
  queries = rng.integers(0, 3, size=(6, 4)).astype(np.float32)
  ref_d, ref_i = reference.rank(reference.l2(queries, database), 40)
  d, i = euclidean_topk(queries, database, 40, chunk_size=chunk_size, window=window,
                        method=method)
  np.testing.assert_array_equal(np.asarray(d), ref_d)
  np.testing.assert_array_equal(np.asarray(i), ref_i)
  fd, _ = faiss.knn(queries, database, 40)
  np.testing.assert_array_equal(fd, ref_d)  # FAISS may order ties differently; distances agree


@METHODS
def test_nan_and_inf_rank_last(method):
  database = np.arange(24, dtype=np.float32).reshape(12, 2)
  database[1, 0] = np.nan
  database[4, 1] = np.inf
  database[0, 0] = -np.nan  # sign bit set: still ranked with the NaNs, by index
  queries = np.zeros((2, 2), np.float32)
  queries[1, 0] = np.nan
  d, i = euclidean_topk(queries, database, 12, chunk_size=5, window=1, method=method)
  d, i = np.asarray(d), np.asarray(i)
  np.testing.assert_array_equal(i[0, :9], [2, 3, 5, 6, 7, 8, 9, 10, 11])
  assert np.isfinite(d[0, :9]).all()
  # An inf component gives NaN in |q|^2 + |x|^2 - 2 q.x (0 * inf), so all three non-finite rows
  # rank last, NaN after inf, ties by index.
  np.testing.assert_array_equal(i[0, 9:], [0, 1, 4])
  assert np.isnan(d[0, 9:]).all()
  np.testing.assert_array_equal(i[1], np.arange(12))  # an all-NaN row keeps index order
  assert np.isnan(d[1]).all()


def test_errors():
  x = np.zeros((4, 3), np.float32)
  with pytest.raises(ValueError, match=r"k must be in \[1, 4\].*got k = 5"):
    euclidean_topk(x, x, 5)
  with pytest.raises(ValueError, match=r"k must be in \[1, 4\].*got k = 0"):
    euclidean_topk(x, x, 0)
  with pytest.raises(ValueError, match="empty"):
    euclidean_topk(x, np.zeros((0, 3), np.float32), 1)
  with pytest.raises(ValueError, match="dim 3 but database have dim 2"):
    euclidean_topk(x, np.zeros((4, 2), np.float32), 1)
  with pytest.raises(TypeError, match="float"):
    euclidean_topk(x, np.zeros((4, 3), np.int32), 1)
  with pytest.raises(ValueError, match="2-D"):
    euclidean_topk(x[0], x, 1)
  with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
    euclidean_topk(x, x, 1, chunk_size=0)
  with pytest.raises(ValueError, match=r"method must be one of \('auto', 'jax'\), got 'faiss'"):
    euclidean_topk(x, x, 1, method="faiss")


@METHODS
def test_jit_vmap_composition_and_distances(method, float_data):
  queries, database = float_data
  batched = jnp.stack([queries, queries[::-1]])

  @jax.jit
  def user_fn(qs, db):
    return jax.vmap(lambda q: euclidean_topk(q, db, 3, chunk_size=256, method=method))(qs)

  d, i = user_fn(batched, database)
  d0, i0 = euclidean_topk(queries, database, 3, chunk_size=256, method=method)
  np.testing.assert_array_equal(np.asarray(i[0]), np.asarray(i0))
  np.testing.assert_array_equal(np.asarray(i[1]), np.asarray(i0)[::-1])
  # Equal on CPU; a GPU's batched matrix product may sum in another order (last-bit changes,
  # 1e-6 absolute on an H100, where a self-match came out as 9.5e-7 instead of 0).
  np.testing.assert_allclose(np.asarray(d[0]), np.asarray(d0), rtol=1e-6, atol=1e-5)
  full = np.asarray(euclidean_distances(queries, database))
  np.testing.assert_allclose(full, reference.l2(queries, database), rtol=1e-5, atol=1e-4)


@METHODS
@settings(max_examples=8, deadline=None)
@given(st.integers(1, 90), st.integers(1, 4), st.data())
def test_fuzz_integer_data_exact(method, n, dim, data):
  seed = data.draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  k = data.draw(st.integers(1, n))
  chunk = data.draw(st.integers(1, n))
  window = data.draw(st.sampled_from([1, 2, 3, 8]))
  database = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
  queries = rng.integers(-2, 3, size=(3, dim)).astype(np.float32)
  ref_d, ref_i = reference.rank(reference.l2(queries, database), k)
  d, i = euclidean_topk(queries, database, k, chunk_size=chunk, window=window, method=method)
  np.testing.assert_array_equal(np.asarray(d), ref_d)
  np.testing.assert_array_equal(np.asarray(i), ref_i)


def test_default_chunk_uses_block_bytes():
  # Euclidean's default chunk fills euclidean.BLOCK_BYTES of (q, chunk) float32, a multiple of
  # window * GROUP**2 (two levels of group minima); other kernels keep topk.DEFAULT_BLOCK_BYTES.
  from cbir_jax.kernels import euclidean as euclidean_lib
  from cbir_jax.kernels import topk as topk_lib
  chunk = topk_lib.resolve_chunk(None, 10**6, 1000, 32, block_bytes=euclidean_lib.BLOCK_BYTES)
  assert chunk == euclidean_lib.BLOCK_BYTES // 4000 // 2048 * 2048 == 16384
  assert topk_lib.resolve_chunk(None, 10**6, 1000, 32) == 4096
  assert topk_lib.resolve_chunk(None, 10**6, 10**5, 32) == 256  # under one unit: window multiple
  # Balanced: 100k rows in 7 chunks of 14,336 (not 16,384, whose last chunk would mostly
  # overlap its predecessor); never above the budget, always a whole number of units.
  assert topk_lib.resolve_chunk(None, 10**5, 1000, 8, block_bytes=euclidean_lib.BLOCK_BYTES) == (
      14336)
  budget = euclidean_lib.BLOCK_BYTES // 4000 // 512 * 512
  for n in (16385, 50_000, 123_457, 999_999, 3_000_001):
    chunk = topk_lib.resolve_chunk(None, n, 1000, 8, block_bytes=euclidean_lib.BLOCK_BYTES)
    steps = -(-n // chunk)
    assert chunk <= budget and chunk % 512 == 0 and steps == -(-n // budget)
    assert steps * chunk - n < steps * 512
  assert topk_lib.resolve_chunk(None, 100, 1000, 32, block_bytes=2**30) == 96


@pytest.mark.parametrize("platform,block", [("cpu", euclidean.BLOCK_BYTES),
                                            ("cuda", euclidean.GPU_BLOCK_BYTES),
                                            ("rocm", euclidean.GPU_BLOCK_BYTES),
                                            ("tpu", euclidean.BLOCK_BYTES)])
def test_default_chunk_follows_the_lowering_platform(platform, block):
  # Shapes only: nothing is allocated. A GPU lowering streams 1 GiB (q, chunk) blocks, the
  # others 64 MiB ones; an explicit chunk_size is used everywhere.
  q = jax.ShapeDtypeStruct((1000, 4), jnp.float32)
  x = jax.ShapeDtypeStruct((3_000_000, 4), jnp.float32)

  def lowered(**kw):
    fn = jax.jit(lambda q, x: euclidean_topk(q, x, 5, method="jax", **kw))
    return fn.trace(q, x).lower(lowering_platforms=(platform,)).as_text()

  want = topk.resolve_chunk(None, x.shape[0], q.shape[0], euclidean.WINDOW, block_bytes=block)
  other = topk.resolve_chunk(None, x.shape[0], q.shape[0], euclidean.WINDOW,
                             block_bytes=euclidean.BLOCK_BYTES + euclidean.GPU_BLOCK_BYTES
                             - block)
  assert want != other
  text = lowered()
  assert f"tensor<{want}x4xf32>" in text and f"tensor<{other}x4xf32>" not in text
  assert "tensor<40960x4xf32>" in lowered(chunk_size=40960)
