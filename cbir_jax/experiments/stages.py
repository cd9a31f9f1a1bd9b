"""The cached stages every experiment shares: train, extract, evaluate; reports and tables."""

import json
import os
import time

from absl import logging
import numpy as np

from cbir_jax import atomic, jobs
from cbir_jax.eval import protocol, ranking
from cbir_jax.features import extract
from cbir_jax.index import FloatIndex
from cbir_jax.train import trainer

PAPER_KS = (10, 20, 30, 40, 50)


class Stages:
  """The cached stages of one experiment in one workdir (models restored once per tag)."""

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self._restored = {}
    self.seconds = {"train": 0.0, "extract": 0.0, "search": 0.0}

  def train(self, tag: str) -> dict:
    """Trains model `tag` (resuming); cached in train/<tag>/train_result.json."""
    model_config = self.config.models[tag]
    if model_config.get("imported_weights", ""):  # Imported, not trained (e.g. ImageNet AlexNet).
      return {"imported": os.path.basename(model_config.imported_weights)}
    path = os.path.join(self.workdir, "train", tag)
    out, seconds = train_cached(model_config, path, tag)
    self.seconds["train"] += seconds
    return out

  def features(self, tag: str, endpoint: str, split: str, subset: int = -1,
               carve: bool = False):
    """(features f32[n, d], labels int32[n], ids int64[n]) of `split` (cached in features/).

    subset > 0: a stratified subset of that many images, seeded by the experiment's seed.
    carve: the split without the validation part its model was not trained on.
    """
    folder = os.path.join(self.workdir, "features")
    os.makedirs(folder, exist_ok=True)
    name = (f"{tag}_{endpoint}_{split}" + ("_fit" if carve else "")
            + (f"_{subset}" if subset > 0 else ""))
    path = os.path.join(folder, f"{name}.npy")
    if not os.path.exists(path):
      logging.info("stage extract: %s %s on %s -> %s", tag, endpoint, split, path)
      start = time.perf_counter()
      if tag not in self._restored:
        m = self.config.models[tag]
        self._restored[tag] = (
            jobs.import_weights(m.imported_weights, m.imported_model)
            if m.get("imported_weights", "") else
            jobs.restore(os.path.join(self.workdir, "train", tag)))
      jobs.extract_split(self._restored[tag], split, endpoint, path,
                         batch_size=int(self.config.extract_batch_size),
                         dataset=self.config.models[tag].dataset,
                         seed=int(self.config.models[tag].seed), subset=int(subset),
                         subset_seed=int(self.config.seed), carve_validation=carve)
      self.seconds["extract"] += time.perf_counter() - start
    saved = extract.load_features(path, mmap=False)
    return np.asarray(saved.features), saved.labels, saved.ids

  def _timed_search(self, index, queries) -> float:
    """Seconds of one warm `index.search` of every query for its top max(ks) (the kernels'
    streaming top-k; compiled by an untimed call of the same shapes first)."""
    k = min(max(int(k) for k in self.config.ks), len(index))
    index.search(queries, k)
    start = time.perf_counter()
    index.search(queries, k)
    seconds = time.perf_counter() - start
    self.seconds["search"] += seconds
    return seconds

  def evaluate(self, name: str, index, queries, query_labels, database_labels):
    """protocol.evaluate_search over the whole ranking (`ranking.full_ranking_search`), with
    `search_seconds` = one warm top-max(ks) search of all queries (`_timed_search`)."""
    c = self.config
    result = protocol.evaluate_search(name, ranking.full_ranking_search(index), queries,
                                      query_labels, database_labels, protocol=c.protocol,
                                      ks=tuple(c.ks), recall_max=int(c.recall_max))
    result.search_seconds = self._timed_search(index, queries)
    logging.info("%s: %s", name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result

  def evaluate_sealed(self, name: str, index, sealed: protocol.SealedQueries, vectors,
                      database_labels):
    """`evaluate` for held-out queries whose labels only the final score reads."""
    c = self.config
    result = sealed.evaluate(name, ranking.full_ranking_search(index), database_labels,
                             vectors=vectors, ks=tuple(c.ks), recall_max=int(c.recall_max))
    result.search_seconds = self._timed_search(index, vectors)
    logging.info("%s: %s", name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result


def train_cached(model_config, path: str, tag: str = "") -> tuple[dict, float]:
  """(train result, seconds spent) of training `model_config` in `path` (resuming from its
  checkpoints); the result is cached in <path>/train_result.json, so a finished run costs
  nothing the next time."""
  marker = os.path.join(path, "train_result.json")
  if os.path.exists(marker):
    with open(marker, encoding="utf-8") as f:
      return split_accuracies(json.load(f), path), 0.0
  logging.info("stage train: %s -> %s", tag or model_config.model.name, path)
  start = time.perf_counter()
  result = trainer.train_and_evaluate(model_config, path)
  seconds = time.perf_counter() - start
  out = {k: float(v) for k, v in result.metrics.items()}
  if "train_accuracy" not in out:  # Trained before (e.g. an interrupted run): read its log.
    out.update(logged_training(os.path.join(path, "metrics.jsonl")))
  atomic.write_json(marker, out)
  return split_accuracies(out, path), seconds


def logged_training(path: str) -> dict:
  """Last logged train loss/accuracy and the summed logged step time of a metrics.jsonl."""
  out, last_step, seconds = {}, 0, 0.0
  if not os.path.exists(path):
    return out
  with open(path, encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      if "accuracy" in record and "eval_accuracy" not in record:
        out["train_loss"], out["train_accuracy"] = record["loss"], record["accuracy"]
        seconds += record.get("step_seconds", 0.0) * (record["step"] - last_step)
        last_step = record["step"]
  out["logged_step_seconds"] = seconds
  return out


def split_accuracies(result: dict, train_workdir: str) -> dict:
  """A train_result with `val_accuracy` and `test_accuracy` named by split: the trainer's
  `eval_accuracy` is the validation accuracy when the run evaluated on the validation split
  (and then `test_accuracy` is its reported test score), else it was the test/query split's
  (runs trained before selection on validation existed)."""
  out = dict(result)
  if "eval_accuracy" not in out or not os.path.exists(os.path.join(train_workdir, "config.json")):
    return out
  if trainer.splits(trainer.load_config(train_workdir))[1] == "validation":
    out["val_accuracy"] = out["eval_accuracy"]
  else:
    out.setdefault("test_accuracy", out["eval_accuracy"])
  return out


def float_index(database):
  index = FloatIndex(database.shape[1])
  index.add(np.ascontiguousarray(database, dtype=np.float32))
  return index


def mean_std(mean: float, std: float) -> str:
  """A table cell "mean ± std" (4 decimals), as every seeds report writes it."""
  return f"{mean:.4f} ± {std:.4f}"


def ks_columns(ks):
  return [f"paper_map@{k}" for k in ks], [f"Top{k}" for k in ks]


def has_validation(config) -> bool:
  """Whether the experiment carves a validation split (`validation_fraction` > 0) for choices."""
  return float(config.get("validation_fraction", 0.0) or 0.0) > 0


def training_table(train: dict, eval_name: str) -> str:
  """Steps trained, the selected step, last logged train accuracy, validation accuracy (what
  the selection saw; blank for runs that evaluated the test split), test/query accuracy
  (reported only) and times of each trained model."""
  return protocol.markdown_table(
      train, ["steps", "selected_step", "train_accuracy", "val_accuracy", "test_accuracy",
              "train_seconds", "logged_step_seconds"],
      headers=["steps", "selected step", "train acc (last log)", "validation acc", eval_name,
               "train s (this run)", "sum of logged step s"],
      row_header="model", digits={"steps": 0, "selected_step": 0, "train_seconds": 1,
                                  "logged_step_seconds": 1})


def finish(workdir: str, payload: dict, markdown: str, files: dict) -> dict:
  payload["files"] = sorted(files)
  atomic.write_json(os.path.join(workdir, "results.json"), payload)
  atomic.write_text(os.path.join(workdir, "results.md"), markdown)
  return {"markdown": markdown, "files": ["results.json", "results.md"] + sorted(files)}
