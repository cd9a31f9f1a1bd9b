"""Whole-ranking scores on the accelerator: a distance block in, small per-query arrays out.

`protocol.evaluate_search` on a GPU/TPU used to copy each chunk's ranked ids (q_chunk x n int64)
to the host and score them in NumPy (`metrics.RankingScorer`, `metrics.pr_curve`); at 10,000 x
50,000 that copy and the NumPy work dominate. `DeviceRankingScorer` does the same scoring in one
jitted function per chunk and brings back only per-query sums (O(q * len(ks))) and the curves'
hit-count sums (int32[G, r], G = distinct relevant counts among the chunk's queries, i.e. about
the number of classes):

- `add_distances(distances, query_labels, query_positions)`: the distance block f32/i32[q, n] of
  a chunk, ranked on the device by a stable argsort of order-preserving uint32 keys (`_sort_keys`:
  ties to the lower column, -0.0 equal to 0.0, NaN last: NumPy's `argsort(kind="stable")` order,
  so the ranking is the one `ranking.full_ranking_search` sorts on the host; a (u32 key, iota)
  sort is one XLA:GPU can hand to CUB's radix sort). With self exclusion the query's own column
  is removed from its ranked row wherever ties placed it (r = n - 1), as
  `metrics.drop_self_matches` does.
- `add_positions(indices, query_labels)`: ranked database positions int[q, r] (-1 = missing hit,
  never relevant, even to a query labelled -1), for a `search` that only returns ids.

Exactness: hit counts are int32 (exact while q * r < 2**31, checked), so P@k, R@k and both
curves equal the host's float64 values up to float64 rounding (the host divides the grouped hit
counts by each group's relevant count). Only the AP sums sum_i rel_i H_i / i are float32 on the
device (float32 roundings of a sum of <= r terms: ~1e-7 relative at r = 50,000). The host then
divides in float64 as `metrics` does and feeds `metrics.RankingScorer.add_values`, so
"paper_map@k" and every mean are the host's formulas. Device memory: a few (q, n) arrays.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax.eval import metrics

# q * r of one chunk must stay below this: the hit counts summed over the chunk's queries are int32.
MAX_CELLS = 2**31 - 1


def _relevance_scores(rel: jax.Array, groups: jax.Array, num_groups: int,
                      ks: tuple[int, ...]) -> dict[str, jax.Array]:
  """Sums of a ranked relevance block bool[q, r] (best first): see `DeviceRankingScorer`."""
  r = rel.shape[1]
  hits = jnp.cumsum(rel.astype(jnp.int32), axis=1)  # H_i: relevant items among the first i
  gain = jnp.where(rel, hits.astype(jnp.float32) / jnp.arange(1, r + 1, dtype=jnp.float32), 0.0)
  cuts = jnp.array(ks, jnp.int32) - 1
  return {"hits_at_k": hits[:, cuts],  # i32[q, K]
          "gain_at_k": jnp.stack([gain[:, :k].sum(axis=1) for k in ks], axis=1),  # f32[q, K]
          "gain": gain.sum(axis=1),  # f32[q]: the whole ranking's AP numerator
          # i32[G, r]: sum of H_i over the queries of each group (equal relevant counts)
          "hits_by_group": jax.ops.segment_sum(hits, groups, num_segments=num_groups)}


def _sort_keys(distances: jax.Array) -> jax.Array:
  """u32[q, n] keys in the order of `distances` (f32 or i32) as NumPy sorts them: -0.0 == 0.0,
  NaN last. Unsigned keys with an iota give a sort XLA:GPU hands to CUB's radix sort (JAX's
  float comparator, which canonicalises -0.0 and NaN inside the comparison, it does not)."""
  if jnp.issubdtype(distances.dtype, jnp.floating):
    d = distances.astype(jnp.float32)
    d = jnp.where(d == 0, jnp.float32(0), d)
    d = jnp.where(jnp.isnan(d), jnp.float32(jnp.nan), d)
    bits = jax.lax.bitcast_convert_type(d, jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(2**31))
  bits = jax.lax.bitcast_convert_type(distances.astype(jnp.int32), jnp.uint32)
  return bits ^ jnp.uint32(2**31)


@functools.partial(jax.jit, static_argnames=("num_groups", "ks", "self_excluded"))
def _score_distances(distances, column_labels, query_labels, self_columns, groups, *,
                     num_groups, ks, self_excluded):
  n = distances.shape[1]
  rel = column_labels[None, :] == query_labels[:, None]
  code = rel.astype(jnp.int8)
  if self_excluded:
    code = jnp.where(jnp.arange(n)[None, :] == self_columns[:, None], jnp.int8(2), code)
  # A stable argsort, so equal distances keep database order; then the codes in that order.
  order = jnp.argsort(_sort_keys(distances), axis=1, stable=True)
  code = jnp.take_along_axis(code, order, axis=1)
  ranked = code == 1
  if self_excluded:  # drop the query's own entry wherever ties placed it
    at = jnp.argmax(code == 2, axis=1)
    before = jnp.arange(n - 1)[None, :] < at[:, None]
    ranked = jnp.where(before, ranked[:, :-1], ranked[:, 1:])
  return _relevance_scores(ranked, groups, num_groups, ks)


@functools.partial(jax.jit, static_argnames=("num_groups", "ks"))
def _score_positions(indices, position_labels, query_labels, groups, *, num_groups, ks):
  lab = position_labels[jnp.clip(indices, 0, None)]
  rel = (indices >= 0) & (lab == query_labels[:, None])
  return _relevance_scores(rel, groups, num_groups, ks)


class DeviceRankingScorer:
  """`metrics.RankingScorer` plus `evaluate_search`'s PR / recall curves, scored on the device.

  Args:
    database_labels: int[n] labels by database position.
    ks: cut-offs, each in [1, r] (r = n, or n - 1 with self exclusion, for `add_distances`).
    self_excluded: seed 000's protocol: each query is a database item, removed from its own
      ranking and not one of its own relevant items.
    column_positions: int[n], the database position of each distance column (an index's ids when
      they are a permutation of 0..n-1); default the identity.
    max_groups: the most distinct relevant counts among one chunk's queries (the recall curve is
      summed per group of queries with equal counts; a static shape, so one compile).

  `result()` returns (the `metrics.RankingScorer` of every query's values, pr_precision
  float64[r], pr_recall float64[r]).
  """

  def __init__(self, database_labels: np.ndarray, *, ks: Sequence[int], self_excluded: bool,
               column_positions: np.ndarray | None = None, max_groups: int = 1):
    labels = np.asarray(database_labels)
    self.n = len(labels)
    self.classes = np.unique(labels)
    self.ks = tuple(int(k) for k in ks)
    self.self_excluded = bool(self_excluded)
    self.max_groups = max(1, int(max_groups))
    self.host = metrics.RankingScorer(labels, ks=self.ks, self_excluded=self.self_excluded)
    compact = np.searchsorted(self.classes, labels).astype(np.int32)
    self._position_labels = jnp.asarray(compact)
    if column_positions is None:
      self._column_labels = self._position_labels
      self._column_of = None
    else:
      cols = np.asarray(column_positions, np.int64)
      if cols.shape != (self.n,) or not np.array_equal(np.sort(cols), np.arange(self.n)):
        raise ValueError(f"column_positions must be a permutation of 0..{self.n - 1}")
      self._column_labels = jnp.asarray(compact[cols])
      self._column_of = np.argsort(cols)
    self._labels = labels
    self._hits_sum: np.ndarray | None = None
    self._recall_sum: np.ndarray | None = None

  def _prepare(self, query_labels: np.ndarray, r: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    qlab = np.asarray(query_labels)
    if qlab.ndim != 1 or len(qlab) == 0:
      raise ValueError(f"query_labels must be a non-empty 1-D array, got shape {qlab.shape}")
    for k in self.ks:
      metrics._check_k(k, r)  # pylint: disable=protected-access
    if len(qlab) * r >= MAX_CELLS:
      raise ValueError(f"a chunk of {len(qlab)} x {r} exceeds {MAX_CELLS} cells (int32 counts)")
    where = np.minimum(np.searchsorted(self.classes, qlab), len(self.classes) - 1)
    compact = np.where(self.classes[where] == qlab, where, -1).astype(np.int32)
    total = metrics.count_relevant(qlab, self._labels, exclude_self=self.self_excluded)
    values, groups = np.unique(total, return_inverse=True)
    if len(values) > self.max_groups:
      raise ValueError(f"{len(values)} distinct relevant counts exceed max_groups="
                       f"{self.max_groups}")
    group_relevant = np.zeros(self.max_groups, np.float64)  # static shape: one compile
    group_relevant[:len(values)] = values
    return (jnp.asarray(compact), jnp.asarray(groups.astype(np.int32).reshape(-1)), total,
            group_relevant)

  def add_distances(self, distances: Any, query_labels: np.ndarray,
                    query_positions: np.ndarray | None = None) -> "DeviceRankingScorer":
    """Scores one chunk from its distance block.

    Args:
      distances: f32[q, n] or i32[q, n] (a jax array on the device; NumPy is copied there),
        column j = database position `column_positions[j]`; smaller is better.
      query_labels: int[q].
      query_positions: int64[q] database positions of the queries (self exclusion only).
    """
    if getattr(distances, "ndim", None) != 2 or distances.shape[1] != self.n:
      raise ValueError(f"distances must have shape (q, {self.n}), got "
                       f"{getattr(distances, 'shape', None)}")
    if self.self_excluded:
      if query_positions is None:
        raise ValueError("self exclusion needs query_positions")
      pos = np.asarray(query_positions, np.int64)
      if pos.shape != (distances.shape[0],):
        raise ValueError(f"query_positions must have shape ({distances.shape[0]},), got "
                         f"{pos.shape}")
      cols = pos if self._column_of is None else self._column_of[pos]
    else:
      cols = np.zeros(distances.shape[0], np.int64)
    r = self.n - 1 if self.self_excluded else self.n
    qlab, groups, total, group_relevant = self._prepare(query_labels, r)
    if distances.shape[0] != len(total):
      raise ValueError(f"{distances.shape[0]} distance rows but {len(total)} query labels")
    out = _score_distances(jnp.asarray(distances), self._column_labels, qlab,
                           jnp.asarray(cols.astype(np.int32)), groups,
                           num_groups=self.max_groups, ks=self.ks,
                           self_excluded=self.self_excluded)
    return self._collect(out, query_labels, total, group_relevant, r)

  def add_positions(self, indices: np.ndarray, query_labels: np.ndarray) -> "DeviceRankingScorer":
    """Scores one chunk from ranked database positions int[q, r] (best first, -1 = missing)."""
    idx = np.asarray(indices)
    if idx.ndim != 2:
      raise ValueError(f"indices must be 2-D (q, r), got shape {idx.shape}")
    if idx.size and idx.max() >= self.n:
      raise ValueError(f"indices must be database positions < {self.n}, got max {idx.max()}")
    qlab, groups, total, group_relevant = self._prepare(query_labels, idx.shape[1])
    if idx.shape[0] != len(total):
      raise ValueError(f"{idx.shape[0]} ranked rows but {len(total)} query labels")
    out = _score_positions(jnp.asarray(idx.astype(np.int32)), self._position_labels, qlab,
                           groups, num_groups=self.max_groups, ks=self.ks)
    return self._collect(out, query_labels, total, group_relevant, idx.shape[1])

  def _collect(self, out: dict[str, jax.Array], query_labels: np.ndarray, total: np.ndarray,
               group_relevant: np.ndarray, r: int) -> "DeviceRankingScorer":
    host = {key: np.asarray(v) for key, v in jax.device_get(out).items()}
    relevant = total.astype(np.float64)
    values = {"map": _divide(host["gain"], np.minimum(relevant, r))}
    for j, k in enumerate(self.ks):
      hits = host["hits_at_k"][:, j].astype(np.float64)
      values[f"precision@{k}"] = hits / k
      values[f"recall@{k}"] = _divide(hits, relevant)
      values[f"map@{k}"] = _divide(host["gain_at_k"][:, j], np.minimum(relevant, k))
    self.host.add_values(values, query_labels)
    by_group = host["hits_by_group"].astype(np.float64)
    hits_sum = by_group.sum(axis=0)
    recall_sum = _divide(by_group, group_relevant[:, None]).sum(axis=0)
    if self._hits_sum is None:
      self._hits_sum, self._recall_sum = hits_sum, recall_sum
    else:
      self._hits_sum += hits_sum
      self._recall_sum += recall_sum
    return self

  def result(self) -> tuple[metrics.RankingScorer, np.ndarray, np.ndarray]:
    """(the `metrics.RankingScorer` holding every query's values (its `result()`: the metrics
    dict), pr_precision float64[r], pr_recall float64[r]): query means, as `metrics.pr_curve`)."""
    if self._hits_sum is None:
      raise ValueError("no queries were scored (call add_distances() or add_positions() first)")
    count = len(self.host.query_labels())
    ranks = np.arange(1, len(self._hits_sum) + 1, dtype=np.float64)
    return self.host, self._hits_sum / ranks / count, self._recall_sum / count


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """float64 num / den, 0 where den == 0 (the host metrics' rule)."""
  num = np.asarray(num, np.float64)
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
