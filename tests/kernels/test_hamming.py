"""hamming_topk / hamming_distances vs exact bit counting and FAISS IndexBinaryFlat."""

import faiss
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cbir_jax.kernels import hamming_distances, hamming_topk, pack_bits, to_faiss_bytes
from tests.kernels import reference

METHODS = ("auto", "popcount", "gemm")


def _codes(rng, n, nbits, p=0.5):
  return pack_bits(rng.random((n, nbits)) < p)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nbits,n,k,chunk_size,window", [
    (64, 1001, 10, 128, 8), (70, 333, 1, 100, 32), (256, 257, 257, 64, 4), (16, 999, 25, None, 32)])
def test_vs_exact_reference_and_faiss(method, nbits, n, k, chunk_size, window, rng):
  # Few bits set -> many equal distances; duplicated rows -> exact ties.
  database = _codes(rng, n, nbits, p=0.1)
  database[n // 2] = database[1]
  queries = _codes(rng, 6, nbits, p=0.1)
  queries[0] = database[n - 1]
  d, i = hamming_topk(queries, database, k, chunk_size=chunk_size, window=window, method=method)
  assert d.shape == (6, k) and d.dtype == jnp.int32 and i.dtype == jnp.int32
  ref_d, ref_i = reference.rank(reference.hamming(queries, database), k)
  np.testing.assert_array_equal(np.asarray(d), ref_d)
  np.testing.assert_array_equal(np.asarray(i), ref_i)
  index = faiss.IndexBinaryFlat(8 * (-(-nbits // 8)))
  index.add(to_faiss_bytes(database, nbits))
  fd, _ = index.search(to_faiss_bytes(queries, nbits), k)
  np.testing.assert_array_equal(fd, ref_d)  # FAISS may order ties differently


def test_distances_both_methods(rng):
  a, b = _codes(rng, 9, 95), _codes(rng, 31, 95)
  ref = reference.hamming(a, b)
  for method in METHODS:
    np.testing.assert_array_equal(np.asarray(hamming_distances(a, b, method=method)), ref)


def test_errors():
  x = np.zeros((4, 2), np.uint32)
  with pytest.raises(ValueError, match=r"k must be in \[1, 4\].*got k = 9"):
    hamming_topk(x, x, 9)
  with pytest.raises(ValueError, match="empty"):
    hamming_topk(x, np.zeros((0, 2), np.uint32), 1)
  with pytest.raises(ValueError, match="2 uint32 words per code but database_codes have 3"):
    hamming_topk(x, np.zeros((4, 3), np.uint32), 1)
  with pytest.raises(TypeError, match="uint32"):
    hamming_topk(x, x.view(np.int32), 1)
  with pytest.raises(ValueError, match="method"):
    hamming_topk(x, x, 1, method="magic")


def test_jit_vmap_composition(rng):
  database = _codes(rng, 300, 64)
  queries = _codes(rng, 8, 64).reshape(2, 4, 2)

  @jax.jit
  def user_fn(qs, db):
    return jax.vmap(lambda q: hamming_topk(q, db, 5, chunk_size=128))(qs)

  d, i = user_fn(queries, database)
  for b in range(2):
    ref_d, ref_i = reference.rank(reference.hamming(queries[b], database), 5)
    np.testing.assert_array_equal(np.asarray(d[b]), ref_d)
    np.testing.assert_array_equal(np.asarray(i[b]), ref_i)


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 80), st.integers(1, 70), st.data())
def test_fuzz_exact(n, nbits, data):
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  k = data.draw(st.integers(1, n))
  chunk = data.draw(st.integers(1, n))
  window = data.draw(st.sampled_from([1, 2, 5]))
  method = data.draw(st.sampled_from(METHODS))
  database = _codes(rng, n, nbits, p=0.2)
  queries = _codes(rng, 2, nbits, p=0.2)
  ref_d, ref_i = reference.rank(reference.hamming(queries, database), k)
  d, i = hamming_topk(queries, database, k, chunk_size=chunk, window=window, method=method)
  np.testing.assert_array_equal(np.asarray(d), ref_d)
  np.testing.assert_array_equal(np.asarray(i), ref_i)
