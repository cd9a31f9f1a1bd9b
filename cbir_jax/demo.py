"""The main job: train -> features -> exact and hashed indexes -> held-out scores -> figures.

`bin/demo.py` calls `run_demo`; nothing in the library imports this module.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import ml_collections
import numpy as np
from absl import logging

from cbir_jax import atomic, jobs
from cbir_jax.data import datasets
from cbir_jax.eval import metrics, plots, protocol
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.index import BinaryIndex, FloatIndex
from cbir_jax.models import registry
from cbir_jax.train import trainer


@dataclasses.dataclass
class RetrievalReport:
  """What one index achieved on the held-out queries."""
  name: str
  metrics: dict[str, float]
  search_seconds: float
  distances: np.ndarray   # [q, sheet_k] of the first queries, for the contact sheet
  indices: np.ndarray     # [q, sheet_k] positions in the database split


@dataclasses.dataclass
class DemoResult:
  workdir: str
  ks: tuple[int, ...]     # the cut-offs reported (retrieval.ks up to the database size)
  reports: list[RetrievalReport]
  train_metrics: dict[str, float]
  files: dict[str, str]
  seconds: dict[str, float]


def evaluate_index(name: str, search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                   queries: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray,
                   database_ids: np.ndarray, ks: tuple[int, ...], keep: int) -> RetrievalReport:
  """Ranks the whole database for every query through `search` and scores the ranking.

  `search(queries, k) -> (D, I)` is an index's search returning database ids; `database_ids`
  maps them back to positions in `database_labels`. The full ranking (k = database size) gives
  the standard mAP; paper mAP@k uses its first k entries (`metrics.score_ranking`).
  """
  n = len(database_labels)
  start = time.perf_counter()
  distances, ids = search(queries, n)
  seconds = time.perf_counter() - start
  indices = protocol.ids_to_positions(database_ids, ids)
  scores = metrics.score_ranking(indices, query_labels, database_labels, ks=ks)
  return RetrievalReport(name, scores, seconds, distances[:, :keep], indices[:, :keep])


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks the training fields and the demo's `retrieval` block before any work."""
  trainer.validate_config(config)
  r = config.get("retrieval", None)
  if r is None:
    raise ValueError("config has no retrieval block (endpoint, ks, hash_bits, ...)")
  valid = registry.endpoints(config.model.name)
  if r.endpoint not in valid:
    raise ValueError(f"retrieval.endpoint {r.endpoint!r} is not an endpoint of "
                     f"{config.model.name}; valid: {', '.join(valid)}")
  encoder_lib.HashEncoder(int(r.hash_bits), threshold=r.hash_threshold)
  for field in ("sheet_queries", "sheet_k"):
    if int(r[field]) < 1:
      raise ValueError(f"retrieval.{field} must be >= 1, got {r[field]}")
  if not r.ks or any(int(k) < 1 for k in r.ks):
    raise ValueError(f"retrieval.ks must be ints >= 1, got {tuple(r.ks)}")


def run_demo(config: ml_collections.ConfigDict, workdir: str, *, weights: str | None = None,
             weights_model: str | None = None, weights_format: str | None = None
             ) -> DemoResult:
  """Trains the configured model, indexes its features both ways and evaluates held-out queries.

  The database is the whole training split (`dataset.train_split`), the queries the held-out
  split (`dataset.eval_split`). Writes to `workdir`: the training run (checkpoints, metrics),
  `features/*.npy`, the two indexes (`float.index`, `binary.index`, each with its provenance
  record), `results.json` and `contact_sheet_*.png`. With `weights` (a torchvision or Keras
  checkpoint of `weights_model`, see `models.pretrained`) nothing is trained: the imported
  network's `retrieval.endpoint` features (with the file's preprocessing) are indexed.
  """
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  seconds: dict[str, float] = {}
  t0 = time.perf_counter()
  ds = config.dataset
  train_split, eval_split = trainer.splits(config)
  endpoint = config.retrieval.endpoint
  if weights is None:  # Train the configured model; the trainer hands back its data.
    train_dir = os.path.abspath(os.path.join(workdir, "train"))
    result = trainer.train_and_evaluate(config, train_dir)
    train_metrics = result.metrics
    network = jobs.Restored(result.model, result.state.variables(), config.model.name,
                            workdir=train_dir, config=config, step=int(result.metrics["steps"]),
                            preprocessing=trainer.preprocessing_of(config))
    database, queries = result.train_data, result.eval_data
    if datasets.validation_fraction(ds) > 0:  # The trainer held out a validation part.
      database = datasets.load_split(ds, train_split, seed=int(config.seed),
                                     carve_validation=False)
  else:  # Imported weights: no training; the configured data set is indexed and queried.
    network = jobs.import_weights(weights, weights_model, format=weights_format)
    jobs.check_endpoint(weights_model, endpoint)
    train_metrics = {}
    database = datasets.load_split(ds, train_split, seed=int(config.seed),
                                   carve_validation=False)
    queries = (datasets.load_split(ds, eval_split, seed=int(config.seed)) if eval_split
               else None)
  seconds["train" if weights is None else "import"] = time.perf_counter() - t0
  if queries is None:
    raise ValueError("the demo needs held-out queries: set dataset.eval_split")

  t0 = time.perf_counter()
  db_feats = extract_lib.extract(network.model, network.variables, database.images, endpoint,
                                 batch_size=config.batch_size, preprocess=network.preprocess)
  q_feats = extract_lib.extract(network.model, network.variables, queries.images, endpoint,
                                batch_size=config.batch_size, preprocess=network.preprocess)
  seconds["extract"] = time.perf_counter() - t0
  feat_dir = os.path.join(workdir, "features")
  os.makedirs(feat_dir, exist_ok=True)
  for name, arr in (("database", db_feats), ("queries", q_feats)):
    np.save(os.path.join(feat_dir, f"{name}_{endpoint}.npy"), arr)

  ks = tuple(int(k) for k in config.retrieval.ks if int(k) <= len(database))
  if len(ks) < len(config.retrieval.ks):  # A small collection: the cut-offs adapt to it.
    logging.warning("retrieval.ks %s: cut-offs above the database size %d are left out",
                    tuple(config.retrieval.ks), len(database))
  if not ks:
    raise ValueError(f"every retrieval.ks {tuple(config.retrieval.ks)} exceeds the database "
                     f"size {len(database)}")
  keep = int(config.retrieval.sheet_k)
  files: dict[str, str] = {}

  record = provenance_lib.Provenance(
      [network.source(endpoint)],
      dataset=jobs.dataset_record(ds, train_split, int(config.seed), database))
  float_index = FloatIndex(db_feats.shape[1], metadata=jobs.index_metadata(
      record, database.labels, database.class_names))
  float_index.add(db_feats, ids=database.ids)
  files["float_index"] = os.path.join(workdir, "float.index")
  float_index.save(files["float_index"])

  # Seed 002: rank dimensions by information gain rate on the database, keep the top `bits`,
  # binarise each at its database mean.
  encoder = encoder_lib.HashEncoder(int(config.retrieval.hash_bits),
                                    threshold=config.retrieval.hash_threshold)
  encoder.fit(db_feats, database.labels)
  bits = encoder.bits
  binary_index = BinaryIndex(bits, metadata=jobs.index_metadata(
      record.with_encoder(encoder.state()), database.labels, database.class_names))
  binary_index.add(encoder.encode(db_feats), ids=database.ids)
  files["binary_index"] = os.path.join(workdir, "binary.index")
  binary_index.save(files["binary_index"])

  t0 = time.perf_counter()
  reports = [
      evaluate_index(f"{endpoint} Euclidean (exact)", float_index.search, q_feats,
                     queries.labels, database.labels, database.ids, ks, keep),
      evaluate_index(f"{endpoint} {bits}-bit hash, Hamming", binary_index.search,
                     encoder.encode(q_feats), queries.labels, database.labels, database.ids,
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

  train_metrics = {k: float(v) for k, v in (train_metrics or {}).items()
                   if isinstance(v, (int, float, np.floating, np.integer))}
  files["results"] = os.path.join(workdir, "results.json")
  atomic.write_json(files["results"], {
      "config": config.to_dict(),
      "database_size": int(len(database.labels)), "queries": int(len(queries.labels)),
      "train_metrics": train_metrics, "seconds": seconds,
      "indexes": [{"name": r.name, "metrics": r.metrics, "search_seconds": r.search_seconds}
                  for r in reports]})
  logging.info("demo finished: %s", files)
  return DemoResult(workdir, ks, reports, train_metrics, files, seconds)
