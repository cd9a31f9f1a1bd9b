"""eval.ranking: whole-database rankings equal the kernels' (ties to the lower index)."""

import numpy as np
import pytest

from cbir_jax.eval import ranking
from cbir_jax.index import BinaryIndex, FloatIndex
from cbir_jax.kernels import euclidean_topk, hamming_topk
from cbir_jax.kernels import topk as topk_lib


def test_rank_codes_equals_the_hamming_kernel_with_ties(rng, monkeypatch):
  db = rng.integers(0, 2**32, size=(203, 3), dtype=np.uint32)
  db[50:60] = db[7]  # exact ties: the lower index first
  db[:, 2] &= np.uint32(0xF)  # few distinct distances, many ties
  q = np.concatenate([db[[7, 0]], rng.integers(0, 2**32, size=(9, 3), dtype=np.uint32)])
  monkeypatch.setattr(ranking, "CELLS", 203 * 4)  # 4 queries per block: blocks join exactly
  for k in (203, 150, 102):
    d, i = ranking.rank_codes(q, db, k)
    kd, ki = hamming_topk(q, db, k)
    np.testing.assert_array_equal(i, np.asarray(ki))
    np.testing.assert_array_equal(d, np.asarray(kd))
  assert i.dtype == np.int64 and i.shape == (11, 102)


def test_rank_vectors_equals_a_float64_stable_reference(rng):
  # Small integers: every squared distance is exact in float32, so ties are exact ties.
  db = rng.integers(-3, 4, size=(97, 5)).astype(np.float32)
  q = rng.integers(-3, 4, size=(13, 5)).astype(np.float32)
  d, i = ranking.rank_vectors(q, db, 97)
  ref = ((q[:, None, :].astype(np.float64) - db[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(i, np.argsort(ref, axis=1, kind="stable"))
  np.testing.assert_allclose(d, np.sort(ref, axis=1), atol=1e-5)
  _, ki = euclidean_topk(q, db, 97)
  np.testing.assert_array_equal(i, np.asarray(ki))
  with pytest.raises(ValueError, match=r"k must be in \[1, 97\]"):
    ranking.rank_vectors(q, db, 98)


def test_full_ranking_search_returns_ids_and_defers_small_k(rng, monkeypatch):
  vectors = rng.normal(size=(40, 6)).astype(np.float32)
  index = FloatIndex(6)
  index.add(vectors, ids=np.arange(100, 140))
  search = ranking.full_ranking_search(index)
  d, ids = search(vectors[:5], 40)
  kd, kids = index.search(vectors[:5], 40)
  np.testing.assert_array_equal(ids, kids)
  np.testing.assert_allclose(d, kd, rtol=1e-5, atol=1e-4)
  calls = []
  index.search = lambda q, k: calls.append(k) or (None, None)
  search(vectors[:2], 19)  # k < n / 2: the index's own search
  assert calls == [19]
  with monkeypatch.context() as m:  # an accelerator sorts fast: its kernels rank everything
    m.setattr(ranking.jax, "default_backend", lambda: "gpu")
    search(vectors[:2], 40)
  assert calls == [19, 40]
  codes = BinaryIndex(64)
  codes.add(rng.integers(0, 2**32, size=(30, 2), dtype=np.uint32))
  np.testing.assert_array_equal(ranking.full_ranking_search(codes)(codes.codes[:3], 30)[1],
                                codes.search(codes.codes[:3], 30)[1])
  with pytest.raises(TypeError, match="FloatIndex or BinaryIndex"):
    ranking.full_ranking_search(object())


def test_topk_uses_one_chunk_for_near_full_rankings():
  assert topk_lib.resolve_chunk(None, 50_000, 1024, 32, k=25_000) == 50_000
  assert topk_lib.resolve_chunk(None, 50_000, 1024, 32, k=100) < 50_000
  assert topk_lib.resolve_chunk(128, 50_000, 1024, 32, k=50_000) == 128  # explicit wins
