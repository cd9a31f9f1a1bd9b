"""End-to-end retrieval runs for launchers: train -> features -> indexes -> metrics -> figures.

Nothing in the library imports this module; `bin/demo.py` calls `run_demo`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from cbir_jax.data import datasets
from cbir_jax.eval import metrics, plots
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import hashing, igr
from cbir_jax.index import BinaryIndex, FloatIndex
from cbir_jax.train import trainer


@dataclasses.dataclass
class RetrievalReport:
  """What one index achieved on the held-out queries."""
  name: str
  metrics: dict[str, float]
  search_seconds: float
  distances: np.ndarray   # [q, sheet_k] of the first queries, for the contact sheet
  indices: np.ndarray     # [q, sheet_k] database positions


@dataclasses.dataclass
class DemoResult:
  workdir: str
  reports: list[RetrievalReport]
  train_metrics: dict[str, float]
  files: dict[str, str]
  seconds: dict[str, float]


def _write_json_atomic(path: str, payload: Any) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def evaluate_index(name: str, search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                   queries: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray,
                   ks: tuple[int, ...], keep: int) -> RetrievalReport:
  """Ranks the whole database for every query through `search` and scores the ranking.

  `search(queries, k) -> (D, I)` is an index's search returning database positions. The full
  ranking (k = database size) gives the standard mAP; paper mAP@k uses its first k entries.
  """
  n = len(database_labels)
  start = time.perf_counter()
  distances, indices = search(queries, n)
  seconds = time.perf_counter() - start
  ranked_labels = np.asarray(database_labels)[indices]
  total = metrics.count_relevant(query_labels, database_labels)
  scores = metrics.summarize(ranked_labels, query_labels, total, ks=ks)
  return RetrievalReport(name, scores, seconds, distances[:, :keep], indices[:, :keep])


def run_demo(config: ml_collections.ConfigDict, workdir: str) -> DemoResult:
  """Trains the configured model, indexes its features both ways and evaluates held-out queries.

  Writes to `workdir`: the training run (checkpoints, metrics), `features/*.npy`, the two
  indexes (`float.index`, `binary.index`), `results.json` and `contact_sheet_*.png`.
  """
  os.makedirs(workdir, exist_ok=True)
  seconds: dict[str, float] = {}
  t0 = time.perf_counter()
  result = trainer.train_and_evaluate(config, os.path.join(workdir, "train"))
  seconds["train"] = time.perf_counter() - t0
  model, variables, _ = trainer.restore(os.path.join(workdir, "train"))

  ds = config.dataset
  load = lambda split: datasets.load_arrays(
      ds.name, split, manual_dir=ds.get("manual_dir") or None,
      data_dir=ds.get("data_dir") or None, image_size=ds.get("image_size") or None,
      seed=config.seed)
  database, queries = load(ds.train_split), load(ds.eval_split)

  t0 = time.perf_counter()
  endpoint = config.retrieval.endpoint
  db_feats = extract_lib.extract(model, variables, database.images, endpoint,
                                 batch_size=config.batch_size)
  q_feats = extract_lib.extract(model, variables, queries.images, endpoint,
                                batch_size=config.batch_size)
  seconds["extract"] = time.perf_counter() - t0
  feat_dir = os.path.join(workdir, "features")
  os.makedirs(feat_dir, exist_ok=True)
  for name, arr in (("database", db_feats), ("queries", q_feats)):
    np.save(os.path.join(feat_dir, f"{name}_{endpoint}.npy"), arr)

  ks = tuple(int(k) for k in config.retrieval.ks)
  keep = int(config.retrieval.sheet_k)
  files: dict[str, str] = {}

  float_index = FloatIndex(db_feats.shape[1])
  float_index.add(db_feats)  # ids default to database positions
  float_index.metadata.update({"model": config.model.name, "endpoint": endpoint,
                               "dataset": ds.name, "split": ds.train_split})
  files["float_index"] = os.path.join(workdir, "float.index")
  float_index.save(files["float_index"])

  bits = int(config.retrieval.hash_bits)
  bits = db_feats.shape[1] if bits == -1 else bits
  # Seed 002: rank dimensions by information gain rate on the database, keep the top `bits`.
  order = igr.rank_features(db_feats, database.labels)
  db_sel, q_sel = igr.select(db_feats, order, bits), igr.select(q_feats, order, bits)
  hasher = hashing.MeanThresholdHasher(threshold=config.retrieval.hash_threshold)
  hasher.fit(db_sel)
  binary_index = BinaryIndex(bits)
  binary_index.add(hasher.transform(db_sel))
  binary_index.metadata.update({"model": config.model.name, "endpoint": endpoint,
                                "dataset": ds.name, "hash_threshold": hasher.threshold})
  files["binary_index"] = os.path.join(workdir, "binary.index")
  binary_index.save(files["binary_index"])

  t0 = time.perf_counter()
  reports = [
      evaluate_index(f"{endpoint} Euclidean (exact)", float_index.search, q_feats,
                     queries.labels, database.labels, ks, keep),
      evaluate_index(f"{endpoint} {bits}-bit hash, Hamming", binary_index.search,
                     hasher.transform(q_sel), queries.labels, database.labels,
                     ks, keep),
  ]
  seconds["search_and_eval"] = time.perf_counter() - t0

  rows = min(int(config.retrieval.sheet_queries), len(queries.labels))
  # One query per class first, so the sheet shows the whole label range.
  _, first = np.unique(queries.labels, return_index=True)
  order = np.concatenate([first, np.setdiff1d(np.arange(len(queries.labels)), first)])[:rows]
  for report, tag in zip(reports, ("euclidean", "hamming")):
    idx = report.indices[order]
    files[f"sheet_{tag}"] = plots.contact_sheet(
        os.path.join(workdir, f"contact_sheet_{tag}.png"), queries.images[order],
        queries.labels[order], database.images[idx], database.labels[idx],
        report.distances[order], database.ids[idx], class_names=database.class_names,
        title=f"{ds.name}: {report.name}; green = same class, red = other class")
  ks_arr = np.array(ks)
  files["map_vs_k"] = plots.curves(
      os.path.join(workdir, "map_vs_k.png"), ks_arr,
      {r.name: np.array([r.metrics[f"paper_map@{k}"] for k in ks]) for r in reports},
      xlabel="k (results returned)", ylabel="paper mAP@k (formula 3)",
      title=f"{ds.name}: held-out queries")

  train_metrics = {k: float(v) for k, v in (result.metrics or {}).items()
                   if isinstance(v, (int, float, np.floating, np.integer))}
  files["results"] = os.path.join(workdir, "results.json")
  _write_json_atomic(files["results"], {
      "config": config.to_dict(),
      "database_size": int(len(database.labels)), "queries": int(len(queries.labels)),
      "train_metrics": train_metrics, "seconds": seconds,
      "indexes": [{"name": r.name, "metrics": r.metrics, "search_seconds": r.search_seconds}
                  for r in reports]})
  logging.info("demo finished: %s", files)
  return DemoResult(workdir, reports, train_metrics, files, seconds)
