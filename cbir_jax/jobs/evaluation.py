"""Scores of saved features or indexes, and the selection comparison, with their reports."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from cbir_jax import atomic
from cbir_jax.eval import plots, protocol, selection, selection_report
from cbir_jax.features import extract as extract_lib
from cbir_jax.index import FloatIndex, load_index


# --------------------------------------------------------------------------------- evaluation


def load_labeled(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """(vectors, labels int[n], ids int64[n] or None) of a .npy and its sidecars."""
  saved = extract_lib.load_features(path, mmap=False, require_metadata=False)
  array, labels = saved.features, saved.labels
  if labels is None:
    raise ValueError(f"{path} needs labels in {extract_lib.sidecar_paths(path)['labels']}")
  if array.ndim != 2 or labels.shape != (array.shape[0],):
    raise ValueError(f"{path}: expected (n, d) rows with n labels, got {array.shape} and "
                     f"{labels.shape}")
  return array, labels, saved.ids


def evaluate_files(database: str, out: str, *, queries: str | None = None,
                   index: str | None = None, ks: Sequence[int] = (10, 20, 30, 40, 50),
                   recall_max: int = 100, name: str = "features") -> protocol.RetrievalResult:
  """Scores held-out queries (or the database against itself, self excluded) and writes
  results.json, map_vs_k.png, pr_curve.png and recall_vs_returned.png to `out`."""
  db, db_labels, db_ids = load_labeled(database)
  n = len(db_labels)
  if queries:
    q, q_labels, _ = load_labeled(queries)
    protocol_name, limit = "heldout", n
  else:
    q, q_labels, protocol_name, limit = db, db_labels, "database", n - 1
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1 or max(ks) > limit:
    raise ValueError(f"ks must be in [1, {limit}] (the ranking length), got {list(ks)}")
  if index:
    saved = load_index(index)
    if len(saved) != n:
      raise ValueError(f"index {index} holds {len(saved)} items but the database has {n} labels")
    known = db_ids if db_ids is not None else np.arange(n)

    def search(queries_, k):
      distances, found = saved.search(queries_, k)
      return distances, protocol.ids_to_positions(known, found)
  else:
    exact = FloatIndex(db.shape[1])
    exact.add(np.ascontiguousarray(db, np.float32))
    search = exact.search
  result = protocol.evaluate_search(name, search, q, q_labels, db_labels,
                                    protocol=protocol_name, ks=ks,
                                    recall_max=min(int(recall_max), limit))
  os.makedirs(out, exist_ok=True)
  atomic.write_json(os.path.join(out, "results.json"), result.to_json())
  plots.curves(os.path.join(out, "map_vs_k.png"), np.array(ks),
               {name: np.array([result.metrics[f"paper_map@{k}"] for k in ks])},
               xlabel="k (results returned)", ylabel="mAP(Top k), formula (3)")
  plots.pr_curves(os.path.join(out, "pr_curve.png"), {name: (result.pr_precision,
                                                             result.pr_recall)})
  plots.curves(os.path.join(out, "recall_vs_returned.png"),
               np.arange(1, len(result.recall_curve) + 1), {name: result.recall_curve},
               xlabel="results returned", ylabel="recall")
  return result


# --------------------------------------------------------------------------- selection compare


@dataclasses.dataclass
class ComparisonReport:
  rows: list[dict[str, Any]]
  title: str
  description: str
  paths: dict[str, str]


def compare_feature_files(database: str, queries: str, out: str, *, bits: Sequence[int],
                          k: int | None = None, paper_k: int = 10, random_trials: int = 5,
                          seed: int = 0, threshold: str = "dimension", query_stride: int = 1,
                          title: str | None = None, endpoint: str | None = None,
                          command: str = "", extract_seconds: float = 0.0,
                          info: dict[str, Any] | None = None) -> ComparisonReport:
  """`eval.selection.compare_selection` of two labelled feature files, reported to `out`
  (results.json, results.md, map_vs_bits.png)."""
  import time  # pylint: disable=import-outside-toplevel
  db = extract_lib.load_features(database, mmap=False)
  q = extract_lib.load_features(queries, mmap=False)
  for name, f in (("database", db), ("query", q)):
    if f.labels is None:
      raise ValueError(f"the {name} features have no .labels.npy sidecar (extract writes one)")
  d = db.features.shape[1]
  too_wide = [b for b in bits if b > d]
  if too_wide:
    raise ValueError(f"bits {too_wide} exceed the feature width d={d}; use b in [1, {d}]")
  if k is not None and k > db.features.shape[0]:
    raise ValueError(f"k must be <= the database size {db.features.shape[0]}, got {k}")
  rows_q = np.arange(0, q.features.shape[0], query_stride)
  start = time.time()
  rows = selection.compare_selection(
      db.features, db.labels, q.features[rows_q], q.labels[rows_q], bits=bits, k=k,
      paper_k=paper_k, random_trials=random_trials, seed=seed, threshold=threshold)
  compare_seconds = time.time() - start
  meta = db.metadata
  info = info or {}
  model = info.get("model") or meta.get("model", "?")
  dataset = info.get("dataset") or meta.get("dataset", "?")
  endpoint = endpoint or meta.get("endpoint", "?")
  title = title or f"{dataset} {model} {endpoint}"
  n = db.features.shape[0]
  depth = f"the whole ranking ({n})" if not k else f"top {k}"
  description = (
      f"{model} endpoint `{endpoint}` ({d}-d) on {dataset}: database = {n} images "
      f"({meta.get('split', '?')}), queries = {len(rows_q)} held-out images "
      f"({q.metadata.get('split', '?')}"
      f"{f', every {query_stride}th' if query_stride > 1 else ''}); `map` over {depth}; "
      f"random_euclidean = mean of {random_trials} seeded draws; IGR, hash thresholds "
      f"(`{threshold}`) and PCA fitted on the database only. Extraction {extract_seconds:.0f} s,"
      f" comparison {compare_seconds:.0f} s.")
  metadata = {"model": model, "dataset": dataset, "endpoint": endpoint, "dimensions": d,
              "database_features": os.path.abspath(database),
              "query_features": os.path.abspath(queries), "database_size": int(n),
              "queries": int(len(rows_q)), "query_stride": query_stride, "k": k,
              "paper_k": paper_k, "random_trials": random_trials, "seed": seed,
              "threshold": threshold, "bits": list(bits), "extract_seconds": extract_seconds,
              "compare_seconds": compare_seconds}
  paths = selection_report.write_report(out, rows, title=title, metadata=metadata,
                                        command=command, description=description)
  return ComparisonReport(rows, title, description, paths)
