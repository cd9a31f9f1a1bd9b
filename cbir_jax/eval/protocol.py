"""Evaluation protocols over an index's rankings: query set = database (self excluded) or held out.

Two protocols are supported:
- "database" (seed 000's): every database item is also a query. Query i IS database position
  `query_positions[i]`; its own entry is removed from its result list (the index is asked for
  k + 1 neighbours and `metrics.drop_self_matches` removes the query's own position wherever
  ties placed it), and it does not count as one of its own relevant items.
- "heldout": queries are separate from the database; nothing is removed.

Rankings come from any `search(queries, k) -> (distances (q, k), indices (q, k))` callable in FAISS
order (an index's `search`), so ties follow the kernels' rule (lower database index first).
Metrics and curves are those of `metrics`; this module only arranges inputs, tables and sweeps.
`evaluate_search` scores on the host (NumPy; the default on a CPU backend) or, on an accelerator
or with `device_scoring=True`, on the device (`eval.device_scoring`: a `ranking.FullRankingSearch`
hands over each chunk's distance block, which is ranked and scored there, and only per-query sums
and curve sums come back). Both paths give the same numbers (the device's AP sums are float32).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np

from cbir_jax.eval import device_scoring as device_scoring_lib
from cbir_jax.eval import metrics

SearchFn = Callable[[Any, int], tuple[np.ndarray, np.ndarray]]
PROTOCOLS = ("database", "heldout")


def rank_database(search: SearchFn, queries: Any, database_size: int, *,
                  query_positions: np.ndarray | None = None,
                  k: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
  """Ranks the database for every query; returns (distances, indices, search seconds).

  Args:
    search: `search(queries, k) -> (D (q, k), I (q, k))`, FAISS order, I = database positions.
    queries: whatever `search` takes for q queries (f32[q, d] features, u32[q, w] codes).
    database_size: n, the number of database items.
    query_positions: int[q] for the "database" protocol: query i is database position
      query_positions[i], searched with k + 1 and removed from its own list. None: held out.
    k: results per query; None = the whole ranking (n, or n - 1 with self exclusion).

  Returns:
    distances float[q, k] and indices int64[q, k] (database positions, best first; with self
    exclusion the distances are those of the kept entries), and the wall-clock seconds of the
    single `search` call (the whole query set).

  Raises:
    ValueError: k outside [1, n] (held out) or [1, n - 1] (self excluded), or bad positions.
  """
  n = int(database_size)
  exclude = query_positions is not None
  limit = n - 1 if exclude else n
  k = limit if k is None else int(k)
  if not 1 <= k <= limit:
    raise ValueError(f"k must be in [1, {limit}] for a database of {n}"
                     f"{' with self exclusion' if exclude else ''}, got {k}")
  if exclude:
    pos = np.asarray(query_positions, dtype=np.int64)
    if pos.shape != (len(queries),):
      raise ValueError(f"query_positions must have shape ({len(queries)},), got {pos.shape}")
    if pos.size and (pos.min() < 0 or pos.max() >= n):
      raise ValueError(f"query_positions must be in [0, {n}), got [{pos.min()}, {pos.max()}]")
  start = time.perf_counter()
  distances, indices = search(queries, k + 1 if exclude else k)
  seconds = time.perf_counter() - start
  distances, indices = np.asarray(distances), np.asarray(indices, dtype=np.int64)
  if not exclude:
    return distances, indices, seconds
  kept = metrics.drop_self_matches(indices, pos, k)
  # Distances of the kept entries: the same removal applied to the distance rows.
  is_self = indices == pos[:, None]
  first = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
  keep = np.arange(k + 1)[None, :] != first[:, None]
  return distances[keep].reshape(indices.shape[0], k), kept, seconds


@dataclasses.dataclass
class RetrievalResult:
  """One feature set / index evaluated on one protocol.

  Attributes:
    name: display name, e.g. "AL".
    metrics: {"paper_map@k", "precision@k", "recall@k", "map@k" (standard AP@k, relevant
      count Z = min(R, k)), "map" (standard AP over the whole ranking)} for each k.
    per_class: {class: {"paper_map@k": mean P@k of that class's queries}}.
    recall_curve: float64[m], mean recall after 1..m results (Fig. 4 of seed 000).
    pr_precision, pr_recall: float64[r], the query-averaged PR curve over the whole ranking.
    search_seconds: wall-clock time of one search call for the whole query set.
    num_queries, database_size: sizes; protocol: "database" or "heldout".
  """
  name: str
  metrics: dict[str, float]
  per_class: dict[int, dict[str, float]]
  recall_curve: np.ndarray
  pr_precision: np.ndarray
  pr_recall: np.ndarray
  search_seconds: float
  num_queries: int
  database_size: int
  protocol: str

  def to_json(self) -> dict[str, Any]:
    """A JSON-serialisable dict (curves as lists; the PR curve thinned to <= 200 points)."""
    step = max(1, len(self.pr_recall) // 200)
    return {"name": self.name, "metrics": self.metrics,
            "per_class": {str(c): v for c, v in self.per_class.items()},
            "recall_curve": self.recall_curve.tolist(),
            "pr_precision": self.pr_precision[::step].tolist(),
            "pr_recall": self.pr_recall[::step].tolist(),
            "search_seconds": self.search_seconds, "num_queries": self.num_queries,
            "database_size": self.database_size, "protocol": self.protocol}


def recall_vs_returned(indices: np.ndarray, query_labels: np.ndarray,
                       database_labels: np.ndarray, *, self_excluded: bool,
                       max_returned: int) -> np.ndarray:
  """float64[max_returned]: mean recall after 1..max_returned results (seed 000's Fig. 4)."""
  ranked = metrics.ranked_labels_of(indices, database_labels)
  m = int(max_returned)
  if not 1 <= m <= ranked.shape[1]:
    raise ValueError(f"max_returned must be in [1, {ranked.shape[1]}], got {max_returned}")
  total = metrics.count_relevant(query_labels, database_labels, exclude_self=self_excluded)
  _, recall = metrics.pr_curve(ranked[:, :m], query_labels, total)
  return recall


# Queries ranked at once by `evaluate_search`: rows = max(1, EVAL_CELLS // n), so that the
# (rows, n) rankings and their label and precision arrays stay a few hundred MB.
EVAL_CELLS = 2**24


def evaluate_search(name: str, search: SearchFn, queries: Any, query_labels: np.ndarray,
                    database_labels: np.ndarray, *, protocol: str,
                    query_positions: np.ndarray | None = None,
                    ks: Sequence[int] = (10, 20, 30, 40, 50),
                    recall_max: int = 100, query_chunk: int | None = None,
                    device_scoring: bool | None = None) -> RetrievalResult:
  """Ranks the whole database through `search` for every query and scores it.

  Args:
    name: display name.
    search, queries: as in `rank_database` (`queries` sliceable along its first axis).
    query_labels: int[q]; database_labels: int[n].
    protocol: "database" (queries are database items; needs `query_positions` int[q], or
      defaults to 0..q-1 when q == n) or "heldout".
    ks: cut-offs for the mAP@k / P@k / R@k columns.
    recall_max: length of the recall-vs-returned curve (clipped to the ranking length).
    query_chunk: queries ranked per `search` call (None: max(1, EVAL_CELLS // n)); the scores
      do not depend on it (`metrics.RankingScorer` keeps per-query values, the curves are
      query means).
    device_scoring: score on the accelerator (`eval.device_scoring`): with a `search` that has
      `distances(queries)` and `ids` (`ranking.FullRankingSearch`, ids a permutation of 0..n-1)
      each chunk's distance block is ranked and scored there and only per-query sums come
      back; with any other `search` its ranked ids are scored there. None (default): when
      `jax.default_backend() != "cpu"`. False: the host path (NumPy, faster on a CPU). Both
      give the same numbers up to float32 rounding of the AP sums (~1e-7).

  Returns:
    A RetrievalResult; `search_seconds` is the sum over the chunks' `search` calls (on the
    device distance path: the distance blocks, synchronised). Memory is O(query_chunk * n).
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  qlab = np.asarray(query_labels)
  database_labels = np.asarray(database_labels)
  n = len(database_labels)
  if protocol == "database":
    if query_positions is None:
      if len(qlab) != n:
        raise ValueError(f"protocol 'database' needs query_positions when the {len(qlab)} "
                         f"queries are not the whole database of {n}")
      query_positions = np.arange(n)
    query_positions = np.asarray(query_positions)
  else:
    query_positions = None
  if len(queries) != len(qlab):
    raise ValueError(f"{len(queries)} queries but {len(qlab)} query labels")
  if query_chunk is None:
    query_chunk = max(1, EVAL_CELLS // max(n, 1))
  if isinstance(query_chunk, bool) or int(query_chunk) < 1:
    raise ValueError(f"query_chunk must be an int >= 1, got {query_chunk!r}")
  if device_scoring is None:
    device_scoring = jax.default_backend() != "cpu"
  score = _score_on_device if device_scoring else _score_on_host
  scorer, pr_precision, pr_recall, seconds = score(
      search, queries, qlab, database_labels, query_positions, tuple(int(k) for k in ks),
      int(query_chunk))
  per_class: dict[int, dict[str, float]] = {}
  for k in ks:
    p = scorer.per_query(f"precision@{int(k)}")
    for c in np.unique(qlab):
      per_class.setdefault(int(c), {})[f"paper_map@{int(k)}"] = float(p[qlab == c].mean())
  return RetrievalResult(
      name=name, metrics=scorer.result(), per_class=per_class,
      recall_curve=pr_recall[:min(int(recall_max), len(pr_recall))].copy(),
      pr_precision=pr_precision, pr_recall=pr_recall,
      search_seconds=seconds, num_queries=len(qlab), database_size=n, protocol=protocol)


def _chunks(count: int, size: int) -> Iterable[tuple[int, int]]:
  for start in range(0, max(count, 1), size):
    yield start, min(start + size, count)


def _score_on_host(search, queries, qlab, database_labels, query_positions, ks, query_chunk):
  """`evaluate_search`'s host path: ranked ids to NumPy, `metrics` scores them."""
  n = len(database_labels)
  exclude = query_positions is not None
  scorer = metrics.RankingScorer(database_labels, ks=ks, self_excluded=exclude)
  total = metrics.count_relevant(qlab, database_labels, exclude_self=exclude)
  pr_sum = recall_sum = None
  seconds = 0.0
  for start, stop in _chunks(len(qlab), query_chunk):
    positions = None if query_positions is None else query_positions[start:stop]
    _, indices, took = rank_database(search, queries[start:stop], n, query_positions=positions)
    seconds += took
    chunk_labels = qlab[start:stop]
    scorer.add(indices, chunk_labels)
    ranked = metrics.ranked_labels_of(indices, database_labels)
    precision, recall = metrics.pr_curve(ranked, chunk_labels, total[start:stop])
    weight = stop - start
    pr_sum = precision * weight if pr_sum is None else pr_sum + precision * weight
    recall_sum = recall * weight if recall_sum is None else recall_sum + recall * weight
  return scorer, pr_sum / len(qlab), recall_sum / len(qlab), seconds


def _score_on_device(search, queries, qlab, database_labels, query_positions, ks, query_chunk):
  """`evaluate_search`'s device path (`eval.device_scoring`); same returns as the host path."""
  n = len(database_labels)
  exclude = query_positions is not None
  if len(qlab) == 0:
    raise ValueError("need at least one query, got 0")
  total = metrics.count_relevant(qlab, database_labels, exclude_self=exclude)
  groups = min(query_chunk, len(np.unique(total)))
  ids = getattr(search, "ids", None)
  blocks = (callable(getattr(search, "distances", None)) and ids is not None
            and len(ids) == n and np.array_equal(np.sort(ids), np.arange(n)))
  scorer = device_scoring_lib.DeviceRankingScorer(
      database_labels, ks=ks, self_excluded=exclude, max_groups=groups,
      column_positions=np.asarray(ids) if blocks else None)
  seconds = 0.0
  for start, stop in _chunks(len(qlab), query_chunk):
    positions = None if query_positions is None else query_positions[start:stop]
    if blocks:
      if positions is not None:
        positions = np.asarray(positions, np.int64)
        if positions.min() < 0 or positions.max() >= n:
          raise ValueError(f"query_positions must be in [0, {n}), got "
                           f"[{positions.min()}, {positions.max()}]")
      began = time.perf_counter()
      distances = jax.block_until_ready(search.distances(queries[start:stop]))
      seconds += time.perf_counter() - began
      scorer.add_distances(distances, qlab[start:stop], positions)
    else:
      _, indices, took = rank_database(search, queries[start:stop], n, query_positions=positions)
      seconds += took
      scorer.add_positions(indices, qlab[start:stop])
  return (*scorer.result(), seconds)


def ids_to_positions(database_ids: np.ndarray, ids: np.ndarray, *,
                     order: np.ndarray | None = None) -> np.ndarray:
  """Positions of `ids` in `database_ids` (any order, unique); ValueError naming ids not there.

  `order`: `np.argsort(database_ids, kind="stable")` computed once by a caller that maps many
  batches against the same database (a search service), so a call costs O(q log n), not a sort.
  """
  database_ids = np.asarray(database_ids)
  ids = np.asarray(ids)
  if order is None:
    order = np.argsort(database_ids, kind="stable")
  where = np.searchsorted(database_ids[order], ids)
  where = np.minimum(where, len(order) - 1)
  found = database_ids[order][where] == ids
  if not np.all(found):
    raise ValueError(f"ids {np.unique(ids[~found])[:10].tolist()} are not in the database "
                     "(was the index built from another data set?)")
  return order[where]


class SealedQueries:
  """Query vectors whose labels only the final scoring reads.

  The experiments hand every choice (fusion variant, bit count b, recipe, checkpoint) to
  `choose_on_validation`, which takes labelled validation data carved from the training side
  and refuses a SealedQueries; the query labels are reachable only through `evaluate`, the
  final score. So no decision can be made on query images by accident.
  """
  __slots__ = ("vectors", "_labels")

  def __init__(self, vectors: Any, labels: np.ndarray):
    self.vectors = vectors
    self._labels = np.asarray(labels)

  def __len__(self) -> int:
    return len(self._labels)

  def evaluate(self, name: str, search: SearchFn, database_labels: np.ndarray, *,
               vectors: Any = None, **kwargs: Any) -> "RetrievalResult":
    """The final held-out score (`evaluate_search`, protocol "heldout"). `vectors` replaces
    the stored query vectors (e.g. their hash codes); kwargs as `evaluate_search`."""
    return evaluate_search(name, search, self.vectors if vectors is None else vectors,
                           self._labels, database_labels, protocol="heldout", **kwargs)


def choose_on_validation(options: Mapping[Any, tuple[SearchFn, Any]], validation_labels: Any,
                         database_labels: np.ndarray, *, key: str = "map",
                         ks: Sequence[int] = (10,)) -> tuple[Any, dict[Any, float]]:
  """The option with the best validation `key` (the first listed on ties) and every score.

  Args:
    options: option -> (search over the validation database, validation query vectors).
    validation_labels: int[v] labels of the validation queries: labelled data carved from the
      training side. A `SealedQueries` here is a TypeError: query labels never decide.
    database_labels: int[n] labels of the database the searches rank.
    key: the metric compared ("map" or e.g. "paper_map@10"); ks: its cut-offs.
  """
  if isinstance(validation_labels, SealedQueries) or any(
      isinstance(v, SealedQueries) for _, v in options.values()):
    raise TypeError("choices are made on validation data, never on the sealed query set")
  if not options:
    raise ValueError("no options to choose from")
  scores = {}
  for option, (search, vectors) in options.items():
    result = evaluate_search(str(option), search, vectors, np.asarray(validation_labels),
                             database_labels, protocol="heldout", ks=ks)
    scores[option] = result.metrics[key]
  best = max(scores, key=lambda o: (scores[o], -list(scores).index(o)))
  return best, scores


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """int64[size]: sorted positions of a seeded, class-stratified subset (all when size <= 0)."""
  lab = np.asarray(labels)
  if size <= 0 or size >= len(lab):
    return np.arange(len(lab), dtype=np.int64)
  rng = np.random.default_rng(seed)
  classes, counts = np.unique(lab, return_counts=True)
  quota = np.floor(counts * size / len(lab)).astype(np.int64)
  # Hand the remainder to the classes with the largest fractional parts (first on ties).
  rest = size - quota.sum()
  frac = counts * size / len(lab) - quota
  quota[np.argsort(-frac, kind="stable")[:rest]] += 1
  picks = [rng.permutation(np.flatnonzero(lab == c))[:q] for c, q in zip(classes, quota)]
  return np.sort(np.concatenate(picks)).astype(np.int64)


class Sweep:
  """Bookkeeping for a parameter sweep (K of LeNet-L, hash bits b): one metrics row per value.

  `add(value, metrics)` records a row; `series(key)` gives the values and one metric in the
  order added; `best(key)` the value with the highest metric (the first added on ties).
  """

  def __init__(self, name: str, parameter: str):
    self.name = name
    self.parameter = parameter
    self.rows: list[tuple[float, dict[str, float]]] = []

  def add(self, value: float, row: Mapping[str, float]) -> None:
    if any(v == value for v, _ in self.rows):
      raise ValueError(f"sweep {self.name!r} already has {self.parameter}={value}")
    self.rows.append((value, {k: float(v) for k, v in row.items()}))

  def values(self) -> np.ndarray:
    return np.array([v for v, _ in self.rows])

  def series(self, key: str) -> np.ndarray:
    """float64[len(rows)]: metric `key` of each row, in the order added."""
    missing = [v for v, r in self.rows if key not in r]
    if missing:
      raise ValueError(f"metric {key!r} missing for {self.parameter} in {missing}")
    return np.array([r[key] for _, r in self.rows], dtype=np.float64)

  def best(self, key: str) -> tuple[float, float]:
    """(value, metric) of the row with the highest `key`; the earliest row wins ties."""
    if not self.rows:
      raise ValueError(f"sweep {self.name!r} is empty")
    scores = self.series(key)
    i = int(np.argmax(scores))
    return self.rows[i][0], float(scores[i])

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "parameter": self.parameter,
            "rows": [{"value": v, "metrics": r} for v, r in self.rows]}


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], *,
                   headers: Sequence[str] | None = None, row_header: str = "",
                   digits: int | Mapping[str, int] = 4,
                   reference: Mapping[str, Iterable[float]] | None = None,
                   reference_suffix: str = " (paper)") -> str:
  """A Markdown table with one row per name, optionally each followed by a reference row.

  Args:
    rows: name -> {column key: value}; a missing key prints "-".
    columns: the keys to print, in order; headers: their printed names (default the keys).
    digits: decimals for every column, or {column key: decimals} (4 for the others).
    reference: name -> values in `columns` order (e.g. a paper's table), printed as
      "<name><reference_suffix>" under the row of the same name.
  """
  heads = list(headers) if headers is not None else list(columns)
  if len(heads) != len(columns):
    raise ValueError(f"headers has {len(heads)} names for {len(columns)} columns")
  places = [digits.get(c, 4) if isinstance(digits, Mapping) else int(digits) for c in columns]
  fmt = lambda v, p: "-" if v is None else f"{float(v):.{p}f}"
  lines = ["| " + " | ".join([row_header] + heads) + " |",
           "|" + "---|" * (len(heads) + 1)]
  for name, row in rows.items():
    lines.append("| " + " | ".join([name] + [fmt(row.get(c), p) for c, p in zip(columns, places)])
                 + " |")
    if reference and name in reference:
      lines.append("| " + " | ".join([name + reference_suffix]
                                     + [fmt(v, p) for v, p in zip(reference[name], places)])
                   + " |")
  return "\n".join(lines) + "\n"
