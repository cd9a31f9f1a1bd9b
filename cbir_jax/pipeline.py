"""End-to-end retrieval runs for launchers: train -> features -> indexes -> metrics -> figures.

Nothing in the library imports this module; `bin/demo.py` calls `run_demo`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from cbir_jax import atomic
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
  indices: np.ndarray     # [q, sheet_k] positions in the database split


@dataclasses.dataclass
class DemoResult:
  workdir: str
  reports: list[RetrievalReport]
  train_metrics: dict[str, float]
  files: dict[str, str]
  seconds: dict[str, float]


def evaluate_index(name: str, search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                   queries: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray,
                   database_ids: np.ndarray, ks: tuple[int, ...], keep: int) -> RetrievalReport:
  """Ranks the whole database for every query through `search` and scores the ranking.

  `search(queries, k) -> (D, I)` is an index's search returning database ids; `database_ids`
  (sorted ascending) maps them back to positions in `database_labels`. The full ranking (k =
  database size) gives the standard mAP; paper mAP@k uses its first k entries.
  """
  n = len(database_labels)
  start = time.perf_counter()
  distances, ids = search(queries, n)
  seconds = time.perf_counter() - start
  indices = np.searchsorted(database_ids, ids)
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

  provenance = {
      "model": config.model.name, "endpoint": endpoint,
      "train_workdir": os.path.join(workdir, "train"),
      "dataset": {"name": ds.name, "split": ds.train_split,
                  "manual_dir": ds.get("manual_dir") or None,
                  "data_dir": ds.get("data_dir") or None,
                  "image_size": ds.get("image_size") or None, "seed": int(config.seed)}}
  float_index = FloatIndex(db_feats.shape[1], metadata=provenance)
  float_index.add(db_feats, ids=database.ids)
  files["float_index"] = os.path.join(workdir, "float.index")
  float_index.save(files["float_index"])

  bits = int(config.retrieval.hash_bits)
  bits = db_feats.shape[1] if bits == -1 else bits
  # Seed 002: rank dimensions by information gain rate on the database, keep the top `bits`.
  order = igr.rank_features(db_feats, database.labels)
  db_sel, q_sel = igr.select(db_feats, order, bits), igr.select(q_feats, order, bits)
  hasher = hashing.MeanThresholdHasher(threshold=config.retrieval.hash_threshold)
  hasher.fit(db_sel)
  binary_index = BinaryIndex(bits, metadata=dict(
      provenance, feature_order=order[:bits], hasher=hasher.state()))
  binary_index.add(hasher.transform(db_sel), ids=database.ids)
  files["binary_index"] = os.path.join(workdir, "binary.index")
  binary_index.save(files["binary_index"])

  t0 = time.perf_counter()
  reports = [
      evaluate_index(f"{endpoint} Euclidean (exact)", float_index.search, q_feats,
                     queries.labels, database.labels, database.ids, ks, keep),
      evaluate_index(f"{endpoint} {bits}-bit hash, Hamming", binary_index.search,
                     hasher.transform(q_sel), queries.labels, database.labels, database.ids,
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
  atomic.write_json(files["results"], {
      "config": config.to_dict(),
      "database_size": int(len(database.labels)), "queries": int(len(queries.labels)),
      "train_metrics": train_metrics, "seconds": seconds,
      "indexes": [{"name": r.name, "metrics": r.metrics, "search_seconds": r.search_seconds}
                  for r in reports]})
  logging.info("demo finished: %s", files)
  return DemoResult(workdir, reports, train_metrics, files, seconds)


@dataclasses.dataclass
class QueryResult:
  """Ranked database matches of query images (FAISS order: distances, then ids)."""
  paths: list[str]            # the query files that were read, in order
  skipped: list[str]          # "path: reason" for files that could not be read
  distances: np.ndarray       # [q, k] squared L2 (float index) or Hamming (binary index)
  ids: np.ndarray             # int64 [q, k] database ids
  labels: np.ndarray          # int32 [q, k] database labels
  class_names: list[str]
  files: dict[str, str]


def list_query_files(query: str) -> list[str]:
  """One image file, or every image file in a folder (sorted); clear errors otherwise."""
  from cbir_jax.data import images as images_lib
  if os.path.isdir(query):
    files = sorted(os.path.join(query, f) for f in os.listdir(query)
                   if images_lib.is_image_file(f) and os.path.isfile(os.path.join(query, f)))
    if not files:
      raise ValueError(f"query folder {query!r} holds no image files "
                       f"(looked for {', '.join(images_lib.IMAGE_EXTENSIONS)})")
    return files
  if not os.path.exists(query):
    raise FileNotFoundError(f"query {query!r} does not exist")
  return [query]


def read_query_images(paths: list[str], image_size: Any, channels: int
                      ) -> tuple[np.ndarray, list[str], list[str]]:
  """(uint8[q, h, w, channels], paths read, "path: reason" skipped) for the model's input.

  Each file is decoded to RGB (CMYK, 16-bit, alpha, palette are converted), resized like the
  database (`image_size`) and, for a 1-channel model, turned to grey. Unreadable and empty
  files are skipped with their reason; none readable -> ValueError listing the reasons.
  """
  from cbir_jax.data import images as images_lib
  size = images_lib.parse_image_size(image_size)
  out, kept, skipped = [], [], []
  for path in paths:
    try:
      with open(path, "rb") as f:
        data = f.read()
      if not data:
        raise ValueError("empty file (0 bytes)")
      image = images_lib.decode_rgb(data)
    except (OSError, ValueError, SyntaxError) as e:
      skipped.append(f"{path}: {e}")
      logging.warning("skipping query %s: %s", path, e)
      continue
    if size is not None:
      image = images_lib.resize(image, size)
    if channels == 1:
      grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
      image = np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None]
    out.append(image)
    kept.append(path)
  if not out:
    raise ValueError("no query image could be read: " + "; ".join(skipped))
  shapes = {im.shape for im in out}
  if len(shapes) > 1:
    raise ValueError(f"query images differ in size {sorted(shapes)} and the index records no "
                     "image_size to resize them to")
  return np.stack(out), kept, skipped


def search_images(index_path: str, query: str, k: int, out_dir: str,
                  batch_size: int = 64) -> QueryResult:
  """Query-by-image: features of the photos in `query` (file or folder) searched in an index.

  The index must record its provenance (as `run_demo` writes it): `train_workdir`, `endpoint`,
  `dataset` and, for a binary index, `feature_order` and `hasher`. Writes `ranking.json`,
  `ranking.csv` and `contact_sheet.png` (queries with their ranked results) into `out_dir`.
  """
  from cbir_jax.index import load_index
  index = load_index(index_path)
  meta = index.metadata
  missing = [key for key in ("train_workdir", "endpoint", "dataset") if key not in meta]
  if isinstance(index, BinaryIndex):
    missing += [key for key in ("feature_order", "hasher") if key not in meta]
  if missing:
    raise ValueError(f"index {index_path!r} lacks the provenance needed to search with images "
                     f"(missing metadata {missing}); build it with cbir-demo")
  if not 1 <= k <= len(index):
    raise ValueError(f"k must be in [1, {len(index)}] (the index size), got {k}")
  model, variables, _ = trainer.restore(meta["train_workdir"])
  ds = meta["dataset"]
  database = datasets.load_arrays(ds["name"], ds["split"], manual_dir=ds.get("manual_dir"),
                                  data_dir=ds.get("data_dir"), image_size=ds.get("image_size"),
                                  seed=ds.get("seed", 0))
  images, paths, skipped = read_query_images(list_query_files(query), ds.get("image_size"),
                                             database.images.shape[-1])
  feats = extract_lib.extract(model, variables, images, meta["endpoint"], batch_size=batch_size)
  if isinstance(index, BinaryIndex):
    hasher = hashing.MeanThresholdHasher.from_state(meta["hasher"])
    feats = hasher.transform(igr.select(feats, np.asarray(meta["feature_order"]), index.nbits))
  distances, ids = index.search(feats, k)
  positions = np.searchsorted(database.ids, ids)
  if np.any(database.ids[np.minimum(positions, len(database.ids) - 1)] != ids):
    raise ValueError(f"index {index_path!r} returns ids that are not in data set "
                     f"{ds['name']}/{ds['split']}: was it built from another data set?")
  labels = database.labels[positions]
  os.makedirs(out_dir, exist_ok=True)
  files = {"json": os.path.join(out_dir, "ranking.json"),
           "csv": os.path.join(out_dir, "ranking.csv"),
           "sheet": os.path.join(out_dir, "contact_sheet.png")}
  rows = [{"query": path, "rank": r + 1, "id": int(ids[i, r]),
           "distance": float(distances[i, r]), "label": int(labels[i, r]),
           "class": database.class_names[int(labels[i, r])]}
          for i, path in enumerate(paths) for r in range(k)]
  atomic.write_json(files["json"], {"index": os.path.abspath(index_path), "k": k,
                                     "skipped": skipped, "results": rows})
  table = io.StringIO()
  writer = csv.DictWriter(table, fieldnames=["query", "rank", "id", "distance", "label", "class"])
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(files["csv"], table.getvalue())
  plots.contact_sheet(files["sheet"], images, np.full(len(paths), -1), database.images[positions],
                      labels, distances, ids, class_names=database.class_names,
                      title=f"{os.path.basename(index_path)}: top {k} of {len(index)}")
  return QueryResult(paths, skipped, distances, ids, labels, list(database.class_names), files)



def search_in_batches(index: FloatIndex | BinaryIndex, queries: np.ndarray, k: int,
                      batch_size: int, on_batch: Callable[[int], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Serves `queries` (float[q, d] or uint32[q, w]) `batch_size` at a time, like a server loop.

  Every batch has the same shape (the last is padded with copies of the first query and trimmed),
  so the search compiles once and memory stays flat however many queries are served. Calls
  `on_batch(queries_done)` after each batch. Returns (D[q, k], I[q, k]) as `index.search`.
  """
  q = len(queries)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if q == 0:
    raise ValueError("no queries to search (got 0 rows)")
  distances, ids = [], []
  for start in range(0, q, batch_size):
    block = queries[start:start + batch_size]
    m = len(block)
    if m < batch_size:
      block = np.concatenate([block, np.repeat(block[:1], batch_size - m, axis=0)])
    d, i = index.search(block, k)
    distances.append(d[:m])
    ids.append(i[:m])
    if on_batch is not None:
      on_batch(start + m)
  return np.concatenate(distances), np.concatenate(ids)
