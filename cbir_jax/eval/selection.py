"""What IGR selection and hashing buy: mAP of full vs selected vs hashed features, per b.

`compare_selection` scores held-out queries against a database for these methods:

  full_euclidean     all d dimensions, squared L2                               (b = d)
  igr_euclidean      top-b dimensions by information gain rate, squared L2
  random_euclidean   b random dimensions, squared L2 (mean over `random_trials` seeded draws)
  igr_hamming        top-b IGR dimensions, mean-threshold hashed, Hamming      (seed paper 002)
  pca_hamming        top-b principal components, mean-threshold hashed, Hamming
  random_hamming     b random dimensions, hashed, Hamming (mean over `random_trials` draws)
  igr_mrmr_hamming   top-b of IGR with a redundancy penalty (`igr.redundancy_aware_order`),
                     hashed, Hamming

The first five are the default set (`DEFAULT_METHODS`); pass `methods` to choose.

Everything is fitted on the database only (IGR rates, thresholds, PCA) and applied unchanged to
the queries. Rankings come from `cbir_jax.kernels` (ties to the lower database index, which at
small b is where Hamming rankings have many ties); metrics from `cbir_jax.eval.metrics`:
`map` = mean average precision over the first `k` results (all when k is None) with
Z = min(relevant in database, k), and `paper_map@p` = seed 000's mAP(Top p).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cbir_jax.eval import metrics, ranking
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import hashing, igr
from cbir_jax.kernels import euclidean_topk, hamming_topk

DEFAULT_METHODS = ("full_euclidean", "igr_euclidean", "random_euclidean", "igr_hamming",
                   "pca_hamming")
METHODS = DEFAULT_METHODS + ("random_hamming", "igr_mrmr_hamming")


def _scores(search: Callable[[int, int], np.ndarray], db_labels: np.ndarray,
            q_labels: np.ndarray, paper_k: int, query_chunk: int) -> dict[str, float]:
  """Runs search(start, stop) -> int[stop - start, depth] positions per query chunk and scores
  the ranking with `metrics.RankingScorer`: "map" over the depth, "paper_map@<paper_k>"."""
  scorer = metrics.RankingScorer(db_labels, ks=(paper_k,))
  for start in range(0, q_labels.shape[0], query_chunk):
    stop = min(start + query_chunk, q_labels.shape[0])
    scorer.add(np.asarray(search(start, stop)), q_labels[start:stop])
  result = scorer.result()
  return {"map": result["map"], f"paper_map@{paper_k}": result[f"paper_map@{paper_k}"]}


def compare_selection(db_features: Any, db_labels: Any, q_features: Any, q_labels: Any, *,
                      bits: Sequence[int] = (16, 32, 64, 128, 256), k: int | None = None,
                      paper_k: int = 10, random_trials: int = 3, seed: int = 0,
                      igr_bins: int = 2, threshold: str = "dimension",
                      query_chunk: int = 256, methods: Sequence[str] = DEFAULT_METHODS,
                      redundancy: float = 1.0) -> list[dict[str, Any]]:
  """Retrieval quality of `methods` (see `METHODS`) for each b in `bits` (b > d is skipped).

  Args:
    db_features: (n, d) real database features; db_labels: (n,) int.
    q_features: (q, d) real query features; q_labels: (q,) int.
    bits: b values (selected dimensions = code bits), each >= 1.
    k: ranking depth for `map` (None: the whole database, memory O(query_chunk * n)).
    paper_k: depth of seed 000's mAP(Top k), <= the ranking depth.
    random_trials: seeded random draws averaged for random_euclidean (>= 1).
    seed: seed of the random draws.
    igr_bins, threshold: see `igr.information_gain_rate` and `hashing.MeanThresholdHasher`.
    query_chunk: queries searched at once.
    methods: which of `METHODS` to score.
    redundancy: the redundancy weight of igr_mrmr_hamming.

  Returns:
    Rows {"method", "bits", "map", "paper_map@<paper_k>"} (the random methods add "map_std"),
    full_euclidean first (bits = d) when requested, then for each b in order the other methods
    in `METHODS` order.

  Raises:
    ValueError: bad shapes, labels, bits, k, paper_k, random_trials or threshold.
  """
  db = np.asarray(db_features, np.float32)
  q = np.asarray(q_features, np.float32)
  if db.ndim != 2 or q.ndim != 2 or db.shape[1] != q.shape[1]:
    raise ValueError(f"features must be (n, d) and (q, d), got {db.shape} and {q.shape}")
  db_labels, q_labels = np.asarray(db_labels), np.asarray(q_labels)
  if db_labels.shape != (db.shape[0],) or q_labels.shape != (q.shape[0],):
    raise ValueError(f"labels must have shapes ({db.shape[0]},) and ({q.shape[0]},), got "
                     f"{db_labels.shape} and {q_labels.shape}")
  n, d = db.shape
  depth = n if k is None else int(k)
  if not 1 <= depth <= n:
    raise ValueError(f"k must be in [1, {n}] or None, got {k}")
  if not 1 <= paper_k <= depth:
    raise ValueError(f"paper_k must be in [1, {depth}], got {paper_k}")
  if random_trials < 1:
    raise ValueError(f"random_trials must be >= 1, got {random_trials}")
  if any(isinstance(b, bool) or int(b) != b or b < 1 for b in bits):
    raise ValueError(f"bits must be ints >= 1, got {list(bits)}")
  if threshold not in hashing.MODES:
    raise ValueError(f"threshold must be one of {list(hashing.MODES)}, got {threshold!r}")
  unknown = [m for m in methods if m not in METHODS]
  if unknown or not methods:
    raise ValueError(f"methods must be a non-empty subset of {list(METHODS)}, got "
                     f"{list(methods)}")
  score = lambda search: _scores(search, db_labels, q_labels, paper_k, query_chunk)

  # A whole or near-whole ranking is sorted by NumPy (eval.ranking), the kernels' k << n top-k
  # otherwise; both rank ties to the lower database index.
  full = ranking.host_sorts(depth, n)
  rank_vectors = ranking.rank_vectors if full else euclidean_topk
  rank_codes = ranking.rank_codes if full else hamming_topk

  def euclidean(db_x: np.ndarray, q_x: np.ndarray) -> dict[str, float]:
    return score(lambda s, e: rank_vectors(q_x[s:e], db_x, depth)[1])

  rates = igr.information_gain_rate(db, db_labels, bins=igr_bins)
  pca = encoder_lib.pca_components(db) if "pca_hamming" in methods else None
  mrmr_order = (igr.redundancy_aware_order(db, rates, penalty=redundancy)
                if "igr_mrmr_hamming" in methods else None)

  def hamming(b: int, selection: str, seed: int = 0) -> dict[str, float]:
    if selection == "igr_mrmr":  # The greedy order does not depend on b: computed once above.
      enc = encoder_lib.HashEncoder(b, selection="first", threshold=threshold)
      enc.fit(db[:, mrmr_order])
      db_codes, q_codes = enc.encode(db[:, mrmr_order]), enc.encode(q[:, mrmr_order])
    else:
      enc = encoder_lib.HashEncoder(b, selection=selection, igr_bins=igr_bins,
                                    threshold=threshold, seed=seed)
      enc.fit(db, db_labels, rates=rates, pca=pca)
      db_codes, q_codes = enc.encode(db), enc.encode(q)
    return score(lambda s, e: rank_codes(q_codes[s:e], db_codes, depth)[1])

  def mean_of(trials: list[dict[str, float]]) -> dict[str, float]:
    row = {key: float(np.mean([t[key] for t in trials])) for key in trials[0]}
    row["map_std"] = float(np.std([t["map"] for t in trials]))
    return row

  rows = [dict(method="full_euclidean", bits=d, **euclidean(db, q))] if (
      "full_euclidean" in methods) else []
  order = igr.order_by_rate(rates)
  rng = np.random.default_rng(seed)
  for b in (int(b) for b in bits):
    if b > d:
      continue
    keep = order[:b]
    if "igr_euclidean" in methods:
      rows.append(dict(method="igr_euclidean", bits=b, **euclidean(db[:, keep], q[:, keep])))
    if "random_euclidean" in methods:
      trials = []
      for _ in range(random_trials):
        dims = rng.permutation(d)[:b]
        trials.append(euclidean(db[:, dims], q[:, dims]))
      rows.append(dict(method="random_euclidean", bits=b, **mean_of(trials)))
    if "igr_hamming" in methods:
      rows.append(dict(method="igr_hamming", bits=b, **hamming(b, "igr")))
    if "pca_hamming" in methods:
      rows.append(dict(method="pca_hamming", bits=b, **hamming(b, "pca")))
    if "random_hamming" in methods:
      trials = [hamming(b, "random", seed=seed + t) for t in range(random_trials)]
      rows.append(dict(method="random_hamming", bits=b, **mean_of(trials)))
    if "igr_mrmr_hamming" in methods:
      rows.append(dict(method="igr_mrmr_hamming", bits=b, **hamming(b, "igr_mrmr")))
  return rows


def format_table(rows: Sequence[dict[str, Any]], metric: str = "map") -> str:
  """Markdown table: one row per b, one column per method, cells `metric` (4 decimals)."""
  bits = sorted({r["bits"] for r in rows if r["method"] != "full_euclidean"})
  full = [r for r in rows if r["method"] == "full_euclidean"]
  methods = [m for m in METHODS[1:] if any(r["method"] == m for r in rows)]
  cell = {(r["method"], r["bits"]): r[metric] for r in rows}
  lines = ["| b | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
  for b in bits:
    lines.append(f"| {b} | " + " | ".join(
        f"{cell[(m, b)]:.4f}" if (m, b) in cell else "-" for m in methods) + " |")
  if full:
    lines.append(f"\nfull_euclidean (all {full[0]['bits']} dimensions): "
                 f"{full[0][metric]:.4f}")
  return "\n".join(lines)
