"""Whole-database rankings for evaluations: the kernels' distances, NumPy's stable sort.

Scoring mAP over the whole ranking asks an index for k = n results per query. The streaming
top-k kernels (`cbir_jax.kernels`) are built for k << n; at k = n they end in one XLA sort of
(q, n) keys, which on CPU is about 5x slower than NumPy's stable sort of the same distances
(1,024 x 50,000 int32 keys: 15 s against 3.3 s on the 2-core CPU, measured 2026-11-28). So an
evaluation that ranks the whole database uses `full_ranking_search(index)`: the distance matrix
from the kernels' own distance functions (`euclidean_distances`: |q|^2 + |x|^2 - 2 q.x in float32,
negatives clipped; `hamming_distances`), a query block at a time, ordered by
`np.argsort(kind="stable")`, i.e. ties to the lower database position, the kernels' rule. Hamming
rankings are then identical to the kernels'; Euclidean ones can differ only where two distances
are equal to float32 rounding, as two float formulations of one distance can. Searches for k <
n / 2, and every search when JAX's default backend is an accelerator (whose sort is fast), go to
the index's own `search` (`host_sorts`).

For a whole-ranking evaluation on an accelerator the ranking is not copied back at all:
`FullRankingSearch.distances(queries)` gives the same distance block, left on the device, and
`eval.device_scoring` ranks it there with a stable sort (the same ties) and scores it
(`protocol.evaluate_search(..., device_scoring=None)` picks this on a non-CPU backend).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from cbir_jax.kernels import euclidean_distances, hamming_distances

# Distances computed at once per query block: rows = max(1, CELLS // n).
CELLS = 2**24


def host_sorts(k: int, n: int) -> bool:
  """Whether a k-of-n ranking is sorted on the host here: k >= n / 2 on a CPU backend."""
  return 2 * int(k) >= n and jax.default_backend() == "cpu"


def _rank(distances: Callable[[np.ndarray], Any], queries: np.ndarray, n: int,
          k: int) -> tuple[np.ndarray, np.ndarray]:
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}] (n = database size), got k = {k}")
  rows = max(1, CELLS // max(n, 1))
  out_d, out_i = [], []
  for start in range(0, len(queries), rows):
    d = np.asarray(distances(queries[start:start + rows]))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    out_d.append(np.take_along_axis(d, order, axis=1))
    out_i.append(order.astype(np.int64))
  if not out_d:
    return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
  return np.concatenate(out_d), np.concatenate(out_i)


def _vector_distances(queries: Any, database: Any) -> jax.Array:
  """f32[q, n] squared L2 (`euclidean_distances`), the host sort's and the device scorer's."""
  return euclidean_distances(np.asarray(queries, np.float32), database)


def _code_distances(query_codes: Any, database_codes: Any) -> jax.Array:
  """i32[q, n] Hamming distances. The +-1 product form: memory O(q * n), not the popcount
  form's O(q * n * words)."""
  return hamming_distances(np.asarray(query_codes, np.uint32), database_codes, method="gemm")


def rank_vectors(queries: Any, database: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(squared L2 f32[q, k], positions int64[q, k]) of the k nearest of `database`, stable."""
  db = np.asarray(database, np.float32)
  return _rank(lambda block: _vector_distances(block, db), np.asarray(queries, np.float32),
               db.shape[0], int(k))


def rank_codes(query_codes: Any, database_codes: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(Hamming int32[q, k], positions int64[q, k]) of the k nearest codes, ties to lower index."""
  db = np.asarray(database_codes, np.uint32)
  return _rank(lambda block: _code_distances(block, db), np.asarray(query_codes, np.uint32),
               db.shape[0], int(k))


class FullRankingSearch:
  """`search(queries, k)` over a FloatIndex / BinaryIndex for evaluations (see module doc):
  where `host_sorts(k, n)`, the distance matrix and NumPy's stable sort, else `index.search`.
  Returns the index's ids, as `index.search` does.

  `distances(queries)` gives the unsorted distance block for `eval.device_scoring`, which ranks
  and scores it on the device (`protocol.evaluate_search(..., device_scoring=True)`).

  Attributes:
    ids: int64[n], the index's id of each distance column (column j = the j-th stored item).
  """

  def __init__(self, index: Any):
    if hasattr(index, "codes"):
      self._stored, self._rank, self._distances = (index.codes, rank_codes, _code_distances)
    elif hasattr(index, "vectors"):
      self._stored, self._rank, self._distances = (index.vectors, rank_vectors,
                                                   _vector_distances)
    else:
      raise TypeError(f"full_ranking_search needs a FloatIndex or BinaryIndex, got "
                      f"{type(index).__name__}")
    self._index = index
    self.n = self._stored.shape[0]
    self.ids = np.asarray(index.ids, np.int64)
    self._device: jax.Array | None = None

  def __call__(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    if host_sorts(k, self.n):
      distances, positions = self._rank(queries, self._stored, k)
      return distances, self.ids[positions]
    return self._index.search(queries, k)

  def distances(self, queries: Any) -> jax.Array:
    """f32[q, n] squared L2 (FloatIndex) or i32[q, n] Hamming (BinaryIndex) of `queries`
    (f32[q, d] / u32[q, w]) to every stored item, a jax array left on the default device (the
    stored items are copied there once). The values the host ranking sorts."""
    if self._device is None:
      self._device = jax.device_put(self._stored)
    return self._distances(queries, self._device)


def full_ranking_search(index: Any) -> FullRankingSearch:
  """The `FullRankingSearch` of a FloatIndex / BinaryIndex (see that class)."""
  return FullRankingSearch(index)
