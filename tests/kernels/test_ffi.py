"""The native FFI kernel (cbir_jax.kernels.ffi): built, selected per platform, exact.

tests/kernels/test_euclidean.py runs every Euclidean search test through both implementations;
here are the native kernel's own edges: several tiles and worker threads, ties across tile
boundaries, odd query counts, n_valid / offset (the sharded path's arguments), empty queries.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.kernels import euclidean, ffi, topk
from tests.kernels import reference

native = pytest.mark.skipif(not ffi.available(),
                            reason="native extension not built (no C++ compiler at install "
                            "time, CBIR_JAX_NATIVE_BUILD=0) or disabled (CBIR_JAX_NATIVE=0)")


def test_extension_built_where_a_compiler_exists():
  if os.environ.get("CBIR_JAX_NATIVE") == "0" or os.environ.get("CBIR_JAX_NATIVE_BUILD") == "0":
    pytest.skip("native kernels disabled by CBIR_JAX_NATIVE(_BUILD)=0")
  if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
    pytest.skip("no C++ compiler here, so the install used the pure-JAX kernels")
  assert ffi.available(), "a C++ compiler exists but cbir_jax.kernels._native was not built"
  assert ffi.simd() in ("avx512", "avx2", "neon", "generic")


def _lowered(platform, method="auto"):
  x = jnp.zeros((64, 8), jnp.float32)
  fn = jax.jit(lambda q, x: euclidean.euclidean_topk(q, x, 3, method=method))
  return fn.trace(x[:5], x).lower(lowering_platforms=(platform,)).as_text()


@native
def test_custom_call_only_in_cpu_lowering():
  assert ffi.L2_TOPK_TARGET in _lowered("cpu")
  assert ffi.L2_TOPK_TARGET not in _lowered("cpu", method="jax")
  for platform in ("cuda", "tpu"):
    assert ffi.L2_TOPK_TARGET not in _lowered(platform)


def _native_keys(q, x, k, n_valid=None, offset=0):
  keys, idx = jax.jit(ffi.l2_topk_keys, static_argnums=2)(q, x, k, n_valid, offset)
  return np.asarray(keys), np.asarray(idx)


@native
@pytest.mark.parametrize("q,n,d,k", [(13, 9001, 3, 25), (8, 20000, 17, 1), (1, 4097, 2, 4097)])
def test_ties_across_tiles_and_workers(q, n, d, k, rng):
  # Integer data: every distance is exact, thousands tie, and rows span several tiles (4096 rows
  # at small d), which the worker threads take in any order.
  x = rng.integers(0, 3, size=(n, d)).astype(np.float32)
  queries = rng.integers(0, 3, size=(q, d)).astype(np.float32)
  ref_d, ref_i = reference.rank(reference.l2(queries, x), k)
  keys, idx = _native_keys(queries, x, k)
  np.testing.assert_array_equal(np.asarray(topk.keys_to_float(keys)), ref_d)
  np.testing.assert_array_equal(idx, ref_i)


@native
def test_random_floats_many_tiles_vs_reference_and_jax(rng):
  x = rng.normal(size=(10007, 129)).astype(np.float32)
  x[9000] = x[11]  # duplicated rows tie exactly: same sum order in every lane
  queries = rng.normal(size=(19, 129)).astype(np.float32)
  queries[4] = x[11]
  keys, idx = _native_keys(queries, x, 10)
  dist = np.asarray(topk.keys_to_float(keys))
  full = reference.l2(queries, x)
  np.testing.assert_allclose(np.take_along_axis(full, idx, 1), dist, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(dist, reference.rank(full, 10)[0], rtol=1e-5, atol=1e-3)
  assert list(idx[4, :2]) == [11, 9000] and dist[4, 0] == dist[4, 1]
  jd, ji = euclidean.euclidean_topk(queries, x, 10, method="jax")
  # The two implementations sum q.x in different orders: same ranks wherever gaps exceed that.
  ref_d = reference.rank(full, 11)[0]
  gap = np.diff(ref_d, axis=1) > 1e-3
  clear = gap[:, 1:] & gap[:, :-1]
  np.testing.assert_array_equal(idx[:, 1:][clear], np.asarray(ji)[:, 1:][clear])
  assert clear.mean() > 0.9
  np.testing.assert_allclose(dist, np.asarray(jd), rtol=1e-5, atol=1e-3)


@native
def test_n_valid_and_offset_match_pure_jax(rng):
  x = rng.integers(-2, 3, size=(300, 5)).astype(np.float32)
  queries = rng.integers(-2, 3, size=(9, 5)).astype(np.float32)
  for n_valid, k in ((300, 7), (123, 7), (5, 7), (0, 3)):
    got = _native_keys(queries, x, k, jnp.int32(n_valid), jnp.int32(1000))
    want = jax.jit(euclidean.euclidean_topk_keys, static_argnums=(2, 3, 4, 7))(
        queries, x, k, 64, 8, jnp.int32(n_valid), jnp.int32(1000), "jax")
    # Slots past the valid rows hold PAD_KEY; their index is unspecified in the JAX kernel.
    np.testing.assert_array_equal(got[0], np.asarray(want[0]))
    real = got[0] != topk.PAD_KEY
    np.testing.assert_array_equal(got[1][real], np.asarray(want[1])[real])
    assert real.sum() == 9 * min(n_valid, k)
    assert (got[1][~real] == 1000).all()


@native
def test_empty_queries_and_large_k_fallback():
  x = np.ones((50, 4), np.float32)
  d, i = euclidean.euclidean_topk(np.zeros((0, 4), np.float32), x, 5)
  assert d.shape == i.shape == (0, 5)
  big = np.arange(ffi.L2_MAX_K + 3, dtype=np.float32)[:, None]
  d, i = euclidean.euclidean_topk(np.zeros((1, 1), np.float32), big, ffi.L2_MAX_K + 1)
  np.testing.assert_array_equal(np.asarray(i)[0], np.arange(ffi.L2_MAX_K + 1))


def test_unavailable_native_raises_clearly(monkeypatch):
  monkeypatch.setenv("CBIR_JAX_NATIVE", "0")
  assert not ffi.available()
  with pytest.raises(RuntimeError, match="CBIR_JAX_NATIVE=0"):
    ffi.l2_topk_keys(jnp.zeros((1, 2)), jnp.zeros((3, 2)), 1)


# ---- the native Hamming kernel (csrc/hamming_topk.h) ----

def _native_hamming(q, x, k, n_valid=None, offset=0):
  keys, idx = jax.jit(ffi.hamming_topk_keys, static_argnums=2)(q, x, k, n_valid, offset)
  return np.asarray(keys), np.asarray(idx)


@native
@pytest.mark.parametrize("words,q,n,k", [
    (1, 3, 150_001, 10),   # 32 bits: portable loop, several 64k-row tiles
    (2, 1, 70_007, 7),     # 64 bits: 8 rows per AVX-512 step, a tail of 7 rows
    (3, 9, 20_001, 25),    # 96 bits: odd words, portable; 9 queries: small tiles
    (4, 2, 20_003, 1),     # 128 bits
    (8, 12, 9_001, 100),   # 256 bits, k > unrolled selection
    (16, 1, 4_099, 4_099),  # 512 bits, k = n
    (10, 2, 3_001, 5)])    # 320 bits: 5 64-bit words, portable
def test_hamming_ties_tiles_words(rng, words, q, n, k):
  # Sparse bits: small distances, thousands of exact ties spread over tiles and workers.
  x = pack_bits_words(rng.random((n, 32 * words)) < 0.03)
  queries = pack_bits_words(rng.random((q, 32 * words)) < 0.03)
  x[n // 2] = x[3]
  queries[0] = x[3]
  ref_d, ref_i = reference.rank(reference.hamming(queries, x), k) if n * q <= 2e6 else (None,
                                                                                          None)
  keys, idx = _native_hamming(queries, x, k)
  if ref_d is None:  # large cases: check against the pure-JAX kernel and FAISS's distances
    from cbir_jax.kernels import hamming  # pylint: disable=import-outside-toplevel
    ref_d, ref_i = (np.asarray(a) for a in hamming.hamming_topk(queries, x, k,
                                                               method="popcount"))
  np.testing.assert_array_equal(keys, ref_d)
  np.testing.assert_array_equal(idx, ref_i)


def pack_bits_words(bits):
  from cbir_jax.kernels import pack_bits  # pylint: disable=import-outside-toplevel
  return np.asarray(pack_bits(bits))


@native
def test_hamming_n_valid_offset_and_faiss(rng):
  import faiss  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import to_faiss_bytes  # pylint: disable=import-outside-toplevel
  x = pack_bits_words(rng.random((500, 64)) < 0.2)
  queries = pack_bits_words(rng.random((4, 64)) < 0.2)
  for n_valid, k in ((500, 9), (77, 9), (3, 9), (0, 2)):
    keys, idx = _native_hamming(queries, x, k, jnp.int32(n_valid), jnp.int32(1000))
    real = keys != topk.PAD_KEY
    assert real.sum() == 4 * min(n_valid, k) and (idx[~real] == 1000).all()
    if n_valid:
      ref_d, ref_i = reference.rank(reference.hamming(queries, x[:n_valid]), min(n_valid, k))
      np.testing.assert_array_equal(keys[:, :ref_d.shape[1]], ref_d)
      np.testing.assert_array_equal(idx[:, :ref_d.shape[1]], ref_i + 1000)
  index = faiss.IndexBinaryFlat(64)
  index.add(to_faiss_bytes(x, 64))
  fd, _ = index.search(to_faiss_bytes(queries, 64), 9)
  np.testing.assert_array_equal(_native_hamming(queries, x, 9)[0], fd)


@native
def test_hamming_custom_call_only_in_cpu_lowering():
  from cbir_jax.kernels import hamming  # pylint: disable=import-outside-toplevel
  x = jnp.zeros((64, 2), jnp.uint32)
  for platform, method, present in (("cpu", "auto", True), ("cpu", "popcount", False),
                                    ("cuda", "auto", False), ("tpu", "auto", False)):
    fn = jax.jit(lambda q, x, m=method: hamming.hamming_topk(q, x, 3, method=m))
    text = fn.trace(x[:5], x).lower(lowering_platforms=(platform,)).as_text()
    assert (ffi.HAMMING_TOPK_TARGET in text) == present, (platform, method)


# ---- the native L2 kernel's two paths: GEMV (q <= 16) and GEMM (q > 16) ----

@native
@pytest.mark.parametrize("q", [1, 2, 16, 17, 33])
@pytest.mark.parametrize("d", [3, 17, 64])
def test_gemv_and_gemm_paths_exact_with_ties_nan_and_n_valid(rng, q, d):
  # Integer data: exact distances, heavy ties across 2,048-row GEMV tiles and 16-row blocks;
  # a NaN row ranks last; n_valid / offset cut and shift like the sharded path's.
  n = 4_101
  x = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
  x[4_000] = x[5]  # identical rows in different lanes of a 16-row block
  x[77, 0] = np.nan
  queries = rng.integers(-1, 2, size=(q, d)).astype(np.float32)
  queries[0] = x[5]
  full = reference.l2(queries, x)
  for k, n_valid in ((9, n), (n, n), (20, 3_000)):
    keys, idx = _native_keys(queries, x, k, jnp.int32(n_valid), jnp.int32(7))
    ref_d, ref_i = reference.rank(full[:, :n_valid], min(k, n_valid))
    m = ref_d.shape[1]
    np.testing.assert_array_equal(np.asarray(topk.keys_to_float(keys[:, :m])), ref_d)
    np.testing.assert_array_equal(idx[:, :m], ref_i + 7)
    assert (keys[:, m:] == topk.PAD_KEY).all()
