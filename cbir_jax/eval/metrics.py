"""Retrieval metrics computed from ranked database labels: mAP@k (paper and standard), P@k, R@k, PR.

Every function takes `ranked_labels: int[q, r]` (the class label of each query's r returned
database items, best first, as produced by an index's `search`) and `query_labels: int[q]`.
A returned item is relevant when its label equals the query's. Missing hits (index -1 in an
index's output) must be mapped to a label that matches no class (e.g. -1) before calling.

Two mean-average-precision conventions exist and both are provided:
- `paper_map_at_k`: seed 000's formula (3), "mAP(Top k)", which is a class-balanced mean of
  precision@k (no ranking-order term).
- `average_precision_at_k` / `mean_average_precision`: standard (truncated) average precision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check(ranked_labels: np.ndarray, query_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  ranked = np.asarray(ranked_labels)
  qlab = np.asarray(query_labels)
  if ranked.ndim != 2:
    raise ValueError(f"ranked_labels must be 2-D (q, r), got shape {ranked.shape}")
  if qlab.ndim != 1 or qlab.shape[0] != ranked.shape[0]:
    raise ValueError(
        f"query_labels must have shape ({ranked.shape[0]},) to match ranked_labels "
        f"{ranked.shape}, got {qlab.shape}")
  if ranked.shape[0] == 0:
    raise ValueError("need at least one query, got 0")
  return ranked, qlab


def _check_k(k: int, r: int) -> int:
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
    raise TypeError(f"k must be an int, got {type(k).__name__}")
  if k < 1 or k > r:
    raise ValueError(f"k must be in [1, {r}] (the ranking length), got {k}")
  return int(k)


def relevance(ranked_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
  """bool[q, r]: whether each returned item shares its query's label."""
  ranked, qlab = _check(ranked_labels, query_labels)
  return ranked == qlab[:, None]


def precision_at_k(ranked_labels: np.ndarray, query_labels: np.ndarray, k: int) -> np.ndarray:
  """float64[q]: fraction of each query's first k results that are relevant."""
  rel = relevance(ranked_labels, query_labels)
  k = _check_k(k, rel.shape[1])
  return rel[:, :k].mean(axis=1, dtype=np.float64)


def recall_at_k(ranked_labels: np.ndarray, query_labels: np.ndarray, k: int,
                num_relevant: np.ndarray) -> np.ndarray:
  """float64[q]: relevant items in the first k results over `num_relevant[q]` in the database.

  Queries with no relevant item in the database get recall 0.
  """
  rel = relevance(ranked_labels, query_labels)
  k = _check_k(k, rel.shape[1])
  total = _num_relevant(num_relevant, rel.shape[0])
  hits = rel[:, :k].sum(axis=1, dtype=np.float64)
  return np.divide(hits, total, out=np.zeros_like(hits), where=total > 0)


def _num_relevant(num_relevant: np.ndarray, q: int) -> np.ndarray:
  total = np.asarray(num_relevant, dtype=np.float64)
  if total.shape != (q,):
    raise ValueError(f"num_relevant must have shape ({q},), got {total.shape}")
  if np.any(total < 0):
    raise ValueError(f"num_relevant must be >= 0, got min {total.min()}")
  return total


def paper_map_at_k(ranked_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
  """Seed 000's mAP(Top k), formula (3): mean over classes of mean over its queries of P@k.

  mAP = (1/m) sum_i (1/p_i) sum_j precision_ij(k), with m classes among the queries and p_i
  queries of class i. With the same number of queries per class it equals the mean of P@k.
  """
  p = precision_at_k(ranked_labels, query_labels, k)
  qlab = np.asarray(query_labels)
  classes = np.unique(qlab)
  return float(np.mean([p[qlab == c].mean() for c in classes]))


def average_precision_at_k(ranked_labels: np.ndarray, query_labels: np.ndarray,
                           k: int | None = None,
                           num_relevant: np.ndarray | None = None) -> np.ndarray:
  """float64[q]: average precision of each query over its first k results (all when k is None).

  AP = sum_{i<=k} P@i * rel_i / Z. With `num_relevant` given, Z = min(num_relevant, k) (the
  information-retrieval definition; with k = None and a full ranking this is the exact AP).
  Without it, Z = number of relevant items among the first k (the hashing literature's mAP@k).
  A query with Z = 0 has AP 0 (seed 002: "if the relevant image can't be found, the MAP
  defaults to 0").
  """
  rel = relevance(ranked_labels, query_labels)
  k = rel.shape[1] if k is None else _check_k(k, rel.shape[1])
  rel = rel[:, :k].astype(np.float64)
  hits = np.cumsum(rel, axis=1)
  prec = hits / np.arange(1, k + 1, dtype=np.float64)
  num = (prec * rel).sum(axis=1)
  if num_relevant is None:
    z = hits[:, -1]
  else:
    z = np.minimum(_num_relevant(num_relevant, rel.shape[0]), k)
  return np.divide(num, z, out=np.zeros_like(num), where=z > 0)


def mean_average_precision(ranked_labels: np.ndarray, query_labels: np.ndarray,
                           k: int | None = None,
                           num_relevant: np.ndarray | None = None) -> float:
  """Mean over queries of `average_precision_at_k` (same arguments)."""
  return float(average_precision_at_k(ranked_labels, query_labels, k, num_relevant).mean())


def pr_curve(ranked_labels: np.ndarray, query_labels: np.ndarray,
             num_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(precision float64[r], recall float64[r]): query-averaged P@n and R@n for n = 1..r."""
  rel = relevance(ranked_labels, query_labels)
  total = _num_relevant(num_relevant, rel.shape[0])
  hits = np.cumsum(rel, axis=1, dtype=np.float64)
  precision = hits / np.arange(1, rel.shape[1] + 1, dtype=np.float64)
  recall = np.divide(hits, total[:, None], out=np.zeros_like(hits), where=total[:, None] > 0)
  return precision.mean(axis=0), recall.mean(axis=0)


def per_class_precision_at_k(ranked_labels: np.ndarray, query_labels: np.ndarray,
                             k: int) -> dict[int, float]:
  """{class: mean P@k of that class's queries}: the per-class table behind `paper_map_at_k`."""
  p = precision_at_k(ranked_labels, query_labels, k)
  qlab = np.asarray(query_labels)
  return {int(c): float(p[qlab == c].mean()) for c in np.unique(qlab)}


def count_relevant(query_labels: np.ndarray, database_labels: np.ndarray,
                   exclude_self: bool = False) -> np.ndarray:
  """int64[q]: database items sharing each query's label (minus one per query if exclude_self)."""
  qlab = np.asarray(query_labels)
  classes, counts = np.unique(np.asarray(database_labels), return_counts=True)
  lookup = dict(zip(classes.tolist(), counts.tolist()))
  total = np.array([lookup.get(c, 0) for c in qlab.tolist()], dtype=np.int64)
  return np.maximum(total - 1, 0) if exclude_self else total


def drop_self_matches(indices: np.ndarray, query_positions: np.ndarray, k: int) -> np.ndarray:
  """int64[q, k]: each row of `indices` (int[q, k+1]) without its query's own database position.

  For the protocol where the query set is the database: search k+1 neighbours, then remove the
  query itself (wherever ties placed it); a row that does not contain it loses its last entry.
  """
  idx = np.asarray(indices)
  pos = np.asarray(query_positions)
  if idx.ndim != 2 or idx.shape[1] != k + 1:
    raise ValueError(f"indices must have shape (q, {k + 1}) for k={k}, got {idx.shape}")
  if pos.shape != (idx.shape[0],):
    raise ValueError(f"query_positions must have shape ({idx.shape[0]},), got {pos.shape}")
  is_self = idx == pos[:, None]
  first = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
  keep = np.arange(k + 1)[None, :] != first[:, None]
  return idx[keep].reshape(idx.shape[0], k).astype(np.int64)


def ranked_labels_of(indices: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
  """int[q, r] labels of ranked database positions; a missing hit (-1) gets label -1."""
  idx = np.asarray(indices, dtype=np.int64)
  dbl = np.asarray(database_labels)
  if idx.size and idx.max() >= len(dbl):
    raise ValueError(f"indices must be database positions < {len(dbl)}, got max {idx.max()}")
  return np.where(idx >= 0, dbl[np.clip(idx, 0, None)], -1)


class RankingScorer:
  """Every number the project reports about a ranking, accumulated over query chunks.

  `add(indices, query_labels)` takes ranked database positions int[q_i, r] (best first, -1 =
  missing hit) of a chunk of queries; `result()` returns, for each k in `ks`:
  "paper_map@k" (seed 000's formula (3): class-balanced mean of P@k), "precision@k",
  "recall@k", "map@k" (standard AP over the first k with Z = min(relevant, k)), and "map"
  (standard AP over the whole ranking r; exact when r is the whole database). Per-query values
  are kept, so chunking changes nothing: `score_ranking` is this class with one chunk.

  Args:
    database_labels: int[n].
    ks: cut-offs, each in [1, r].
    self_excluded: the queries are database items removed from their own lists (seed 000's
      protocol), so each has one relevant database item fewer.
  """

  def __init__(self, database_labels: np.ndarray, *, ks: Sequence[int] = (10, 20, 30, 40, 50),
               self_excluded: bool = False):
    self.database_labels = np.asarray(database_labels)
    self.ks = tuple(int(k) for k in ks)
    self.self_excluded = bool(self_excluded)
    self._labels: list[np.ndarray] = []
    self._values: dict[str, list[np.ndarray]] = {}

  def add(self, indices: np.ndarray, query_labels: np.ndarray) -> "RankingScorer":
    ranked = ranked_labels_of(indices, self.database_labels)
    ranked, qlab = _check(ranked, query_labels)
    total = count_relevant(qlab, self.database_labels, exclude_self=self.self_excluded)
    values = {"map": average_precision_at_k(ranked, qlab, None, total)}
    for k in self.ks:
      values[f"precision@{k}"] = precision_at_k(ranked, qlab, k)
      values[f"recall@{k}"] = recall_at_k(ranked, qlab, k, total)
      values[f"map@{k}"] = average_precision_at_k(ranked, qlab, k, total)
    return self.add_values(values, qlab)

  def add_values(self, values: dict[str, np.ndarray],
                 query_labels: np.ndarray) -> "RankingScorer":
    """Adds per-query values float64[q_i] computed elsewhere (`eval.device_scoring`), keyed
    "map" and "precision@k", "recall@k", "map@k" for each k in `ks`, as `add` computes them."""
    qlab = np.asarray(query_labels)
    keys = {"map"} | {f"{m}@{k}" for k in self.ks for m in ("precision", "recall", "map")}
    if set(values) != keys:
      raise ValueError(f"values must have the keys {sorted(keys)}, got {sorted(values)}")
    bad = {key: np.shape(v) for key, v in values.items() if np.shape(v) != qlab.shape}
    if qlab.ndim != 1 or bad:
      raise ValueError(f"values must each have shape {qlab.shape} (one per query), got {bad}")
    self._labels.append(qlab)
    for key, value in values.items():
      self._values.setdefault(key, []).append(np.asarray(value, np.float64))
    return self

  def query_labels(self) -> np.ndarray:
    """int[q]: the labels of every query added so far, in order."""
    return np.concatenate(self._labels) if self._labels else np.zeros((0,), np.int64)

  def per_query(self, key: str) -> np.ndarray:
    """float64[q]: one value (e.g. "precision@10") of every query added so far, in order."""
    if key not in self._values:
      raise ValueError(f"no per-query {key!r}; have {sorted(self._values)}")
    return np.concatenate(self._values[key])

  def result(self) -> dict[str, float]:
    if not self._labels:
      raise ValueError("no queries were scored (call add() first)")
    qlab = self.query_labels()
    per_query = {key: self.per_query(key) for key in self._values}
    classes = np.unique(qlab)
    out: dict[str, float] = {}
    for k in self.ks:
      p = per_query[f"precision@{k}"]
      out[f"paper_map@{k}"] = float(np.mean([p[qlab == c].mean() for c in classes]))
      out[f"precision@{k}"] = float(p.mean())
      out[f"recall@{k}"] = float(per_query[f"recall@{k}"].mean())
      out[f"map@{k}"] = float(per_query[f"map@{k}"].mean())
    out["map"] = float(per_query["map"].mean())
    return out


def score_ranking(indices: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray, *,
                  ks: Sequence[int] = (10, 20, 30, 40, 50), self_excluded: bool = False
                  ) -> dict[str, float]:
  """The project's one scoring function: see `RankingScorer` (one chunk of queries)."""
  return RankingScorer(database_labels, ks=ks, self_excluded=self_excluded).add(
      indices, query_labels).result()
