"""The jobs behind the file-based launchers: extract a split, hash feature files, build an index.

Each launcher in bin/ parses its flags and calls one function here:

  extract_split       bin/extract.py, bin/compare.py: restore a training run -> check the
                      endpoint -> load the split its config names -> features .npy + sidecars;
  hash_feature_files  bin/hash.py: fit a `HashEncoder` on database features, encode every file;
  build_index         bin/index.py build: a FloatIndex / BinaryIndex from a features or codes
                      file, with the provenance record, labels and class names of its sidecar;
  evaluate_files      bin/evaluate.py: score saved features or a saved index.

Every feature or code file carries a JSON sidecar with the provenance record
(`cbir_jax.features.provenance`) of its vectors, so an index built by the chain
extract -> [hash ->] index build is searchable by image (`cbir_jax.query`) like the demo's.
Launcher-level: nothing in the library imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from cbir_jax import atomic
from cbir_jax.data import datasets
from cbir_jax.eval import plots, protocol, selection, selection_report
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import fuse as fuse_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.index import BinaryIndex, FloatIndex, load_index
from cbir_jax.kernels import pack_bits
from cbir_jax.models import registry
from cbir_jax.train import checkpoint as checkpoint_lib
from cbir_jax.train import trainer

DATASET_OVERRIDES = ("name", "manual_dir", "data_dir", "image_size")


@dataclasses.dataclass
class Restored:
  """A network ready for several extractions: a restored training run, or imported weights.

  `source(endpoint)` is its provenance entry; `preprocess` maps uint8 images to its input
  (None: the project's own normalisation, what its training runs use).
  """
  model: Any
  variables: Any
  model_name: str
  workdir: str | None = None
  config: Any = None
  step: int | None = None
  weights: dict[str, Any] | None = None
  preprocessing: Any = None

  @property
  def preprocess(self):
    return None if self.preprocessing is None else self.preprocessing.apply

  def source(self, endpoint: str) -> provenance_lib.Source:
    return provenance_lib.Source(
        self.model_name, endpoint, train_workdir=self.workdir, checkpoint_step=self.step,
        weights=self.weights, preprocessing=(None if self.preprocessing is None else
                                             json.loads(self.preprocessing.to_json())))


def restore(train_workdir: str, step: int | None = None) -> Restored:
  """The model of `train_workdir` at checkpoint `step` (None: the newest)."""
  workdir = os.path.abspath(train_workdir)
  model, variables, config = trainer.restore(workdir, step)
  if step is None:
    ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False,
                                       read_only=True)
    try:
      step = ckpt.latest_step()
    finally:
      ckpt.close()
  return Restored(model, variables, config.model.name, workdir=workdir, config=config,
                  step=int(step), preprocessing=trainer.preprocessing_of(config))


def import_weights(path: str, model_name: str, *, format: str | None = None) -> Restored:
  """A published checkpoint (torchvision .pth / .safetensors, Keras .h5) as a network: the
  weights, our model in the matching variant and the preprocessing they expect
  (`models.pretrained.load_pretrained`)."""
  from cbir_jax.models import pretrained  # pylint: disable=import-outside-toplevel
  loaded = pretrained.load_pretrained(path, model_name, format=format)
  if loaded.num_classes is None:
    raise ValueError(f"{path} holds {model_name} without its classifier (saved with "
                     "include_top=False): it can start a training run (--config.init_from) but "
                     "not be indexed; save the weights with their classifier to extract from them")
  weights = {"path": os.path.abspath(path), "file": loaded.source["file"],
             "sha256": loaded.source["sha256"], "format": loaded.format,
             "framework": loaded.source["framework"], "variant": loaded.variant}
  return Restored(loaded.model, loaded.variables, model_name, weights=weights,
                  preprocessing=loaded.preprocessing)


def check_endpoint(model_name: str, endpoint: str) -> None:
  valid = registry.endpoints(model_name)
  if endpoint not in valid:
    raise ValueError(f"endpoint {endpoint!r} is not an endpoint of {model_name}; valid: "
                     f"{', '.join(valid)}")


def dataset_config(config: Any, overrides: dict[str, Any] | None = None) -> Any:
  """The run's `dataset` block with `overrides` (None values ignored) applied, checked."""
  ds = config.dataset.copy_and_resolve_references()
  for key, value in (overrides or {}).items():
    if key not in DATASET_OVERRIDES:
      raise ValueError(f"cannot override dataset.{key}; valid: {', '.join(DATASET_OVERRIDES)}")
    if value is not None:
      with ds.unlocked():
        ds[key] = value
  datasets.check_dataset_config(ds)
  return ds


def dataset_from_flags(fields: dict[str, Any]) -> Any:
  """A `dataset` block from launcher flags (None values: defaults), checked."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  ds = ml_collections.ConfigDict({"name": None, "manual_dir": "", "data_dir": "",
                                  "image_size": None, "train_split": "train"})
  for key, value in fields.items():
    if value is not None:
      ds[key] = value
  datasets.check_dataset_config(ds)
  return ds


def extract_split(run: Restored, split: str, endpoint: str, out: str, *, batch_size: int = 256,
                  dataset: Any = None, seed: int | None = None, subset: int = 0,
                  subset_seed: int = 0, carve_validation: bool = False
                  ) -> extract_lib.FeatureFile:
  """Features of `split` of the run's data set (or `dataset`) written to `out` with sidecars.

  The sidecar `<stem>.json` holds the provenance record (model, endpoint, run, checkpoint step,
  data set, image shape) and the class names; `<stem>.labels.npy` / `.ids.npy` the labels and
  ids. subset > 0: a seeded, class-stratified subset of that many images.
  carve_validation: the training split without its validation part (`datasets.load_split`).
  """
  check_endpoint(run.model_name, endpoint)
  if dataset is None and run.config is None:
    raise ValueError("imported weights have no data set of their own: give the dataset")
  ds = dataset if dataset is not None else run.config.dataset
  seed = (int(run.config.seed) if run.config is not None else 0) if seed is None else int(seed)
  arrays = datasets.load_split(ds, split, seed=seed, carve_validation=carve_validation)
  rows = protocol.stratified_subset(arrays.labels, int(subset), int(subset_seed))
  record = provenance_lib.Provenance([run.source(endpoint)],
                                     dataset=dataset_record(ds, split, seed, arrays))
  metadata = {"provenance": record.to_dict(), "class_names": list(arrays.class_names),
              "dataset": ds.name, "split": split, "model": run.model_name,
              "checkpoint_step": run.step, "weights": run.weights}
  if carve_validation and datasets.validation_fraction(ds) > 0:
    metadata["without_validation"] = True
  if len(rows) != len(arrays):
    metadata["subset"] = {"size": int(len(rows)), "seed": int(subset_seed)}
  if run.preprocessing is not None:
    metadata["preprocessing"] = run.preprocessing.to_json()
  extract_lib.extract(run.model, run.variables, arrays.images[rows], endpoint,
                      batch_size=batch_size, out=out, metadata=metadata,
                      labels=arrays.labels[rows], ids=arrays.ids[rows],
                      preprocess=run.preprocess)
  return extract_lib.load_features(out)


def dataset_record(dataset: Any, split: str, seed: int, arrays: datasets.ImageArrays) -> dict:
  """The provenance record's `dataset` entry for arrays loaded with `load_split`."""
  get = dataset.get
  return {"name": get("name"), "split": split, "manual_dir": get("manual_dir") or None,
          "data_dir": get("data_dir") or None,
          "image_size": _json_size(datasets.config_image_size(get("image_size"))),
          "seed": int(seed), "image_shape": list(arrays.images.shape[1:]),
          "class_names": list(arrays.class_names)}


def _json_size(size):
  return None if size is None else list(size)


def index_metadata(record: provenance_lib.Provenance | None, labels: Any = None,
                   class_names: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
  """Index metadata: the provenance record, database labels (index order), class names."""
  meta: dict[str, Any] = dict(extra)
  if record is not None:
    meta["provenance"] = record.to_dict()
  if labels is not None:
    meta["labels"] = np.asarray(labels).astype(np.int64).tolist()
  if class_names is not None:
    meta["class_names"] = list(class_names)
  return meta


# ----------------------------------------------------------------------------------- hashing


def _stem(path: str) -> str:
  return os.path.basename(path)[:-len(".npy")]


def hash_feature_files(database: str, queries: Sequence[str], out_dir: str,
                       encoder: encoder_lib.HashEncoder, *, database_labels: str | None = None
                       ) -> dict[str, str]:
  """Fits `encoder` on the database features (and labels) and encodes every file.

  Writes to `out_dir`, each atomically: `<stem>_codes.npy` (uint32[n, ceil(b/32)]) with the
  sidecars of its features (`.json` with the provenance record now holding the encoder state,
  `.labels.npy`, `.ids.npy`) for the database and every query file, and `encoder.json`
  (`HashEncoder.state()`, to encode more vectors later). Returns {name: path}.
  """
  files = [database, *queries]
  for path in files:
    if not path.endswith(".npy"):
      raise ValueError(f"feature files must end in .npy, got {path!r}")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"feature file {path} does not exist")
  stems = [_stem(p) for p in files]
  if len(set(stems)) != len(stems):
    raise ValueError(f"the database and query file names must differ (outputs are named after "
                     f"them), got {stems}")
  db = extract_lib.load_features(database, require_metadata=False)
  labels = db.labels
  if database_labels is not None:
    labels = np.load(database_labels)
  if encoder.selection == "igr" and labels is None:
    raise ValueError(f"no database labels: {extract_lib.sidecar_paths(database)['labels']} does "
                     "not exist (give the labels file)")
  if labels is not None and np.shape(labels) != (db.features.shape[0],):
    raise ValueError(f"database labels have shape {np.shape(labels)}, expected "
                     f"({db.features.shape[0]},)")
  encoder.fit(db.features, labels)
  state = encoder.state()
  os.makedirs(out_dir, exist_ok=True)
  written = {}
  for path in files:
    f = db if path == database else extract_lib.load_features(path, require_metadata=False)
    if f.features.ndim != 2 or f.features.shape[1] != encoder.dim:
      raise ValueError(f"{path} must have shape (m, {encoder.dim}), got {f.features.shape}")
    out = os.path.join(out_dir, f"{_stem(path)}_codes.npy")
    meta = dict(f.metadata)
    record = provenance_lib.from_metadata(meta)
    if record is not None:
      meta["provenance"] = record.with_encoder(state).to_dict()
    meta["encoder"] = {"source": os.path.abspath(path), "bits": encoder.bits,
                       "selection": encoder.selection, "threshold": encoder.threshold}
    for key in ("shape", "dtype", "preprocessing"):
      meta.pop(key, None)
    codes = encoder.encode(f.features)
    sidecars = extract_lib.sidecar_paths(out)
    for name, value, dtype in (("labels", f.labels if path != database else labels, np.int32),
                               ("ids", f.ids, np.int64)):
      if value is not None:
        with atomic.atomic_write(sidecars[name], "wb") as fh:
          np.save(fh, np.asarray(value).astype(dtype))
    atomic.write_json(sidecars["json"], dict(meta, shape=list(codes.shape), dtype="uint32"))
    with atomic.atomic_write(out, "wb") as fh:  # Last: its presence means the sidecars exist.
      np.save(fh, codes)
    written[_stem(path)] = out
  written["encoder"] = os.path.join(out_dir, "encoder.json")
  atomic.write_json(written["encoder"], state)
  return written


# ----------------------------------------------------------------------------------- indexes


def build_index(features: str | Sequence[str], out: str, *, ids: np.ndarray | None = None,
                labels: np.ndarray | None = None, nbits: int | None = None,
                metadata: dict[str, Any] | None = None, fusion: str = "none",
                fusion_weights: Sequence[float] | None = None) -> FloatIndex | BinaryIndex:
  """A FloatIndex (float features) or BinaryIndex (uint32 codes / bool bits) of .npy file(s).

  Ids and labels default to the file's `.ids.npy` / `.labels.npy` sidecars; the provenance
  record and class names come from its `.json` sidecar, so the index is searchable by image
  when the vectors came from `extract_split` / `hash_feature_files`. Several float feature files
  of the same images (equal ids) are fused into one descriptor (`features.fuse`: `fusion`
  "none" = concatenation or "l2" = each part L2-normalised, `fusion_weights` per part), e.g.
  seed 000's AL = F6 + fc8; the record then lists every source. Saved atomically to `out`.
  """
  paths = [features] if isinstance(features, str) else list(features)
  if not paths:
    raise ValueError("no features file given")
  parts = [extract_lib.load_features(p, mmap=False, require_metadata=False) for p in paths]
  saved = parts[0]
  x = saved.features
  records = [provenance_lib.from_metadata(p.metadata) for p in parts]
  record = records[0]
  if len(parts) > 1:
    for path, part in zip(paths, parts):
      if part.features.ndim != 2 or part.features.dtype.kind != "f":
        raise ValueError(f"fused parts must be float features (n, d), got {part.features.dtype}"
                         f"{list(part.features.shape)} in {path}")
      if part.features.shape[0] != x.shape[0] or (part.ids is not None and saved.ids is not None
                                                  and not np.array_equal(part.ids, saved.ids)):
        raise ValueError(f"{path} holds other images than {paths[0]} (row count or ids differ);"
                         " fused parts must describe the same images in the same order")
    x = fuse_lib.fuse([p.features for p in parts], normalize=fusion,
                      weights=None if fusion_weights is None else list(fusion_weights))
    if all(r is not None for r in records):
      record = dataclasses.replace(
          records[0], sources=[src for r in records for src in r.sources],
          fusion={"normalize": fusion, "weights": None if fusion_weights is None
                  else [float(w) for w in fusion_weights],
                  # Each part's input size (seed 000 fuses LeNet-L at 384x256 with AlexNet at
                  # 227x227); query-by-image resizes a photo for each part.
                  "image_shapes": [(r.dataset or {}).get("image_shape") for r in records]})
    else:
      record = None
  if x.ndim != 2:
    raise ValueError(f"features must be 2-D, got shape {x.shape}")
  ids = saved.ids if ids is None else np.asarray(ids)
  labels = saved.labels if labels is None else np.asarray(labels)
  if labels is not None and (labels.shape != (x.shape[0],) or labels.dtype.kind not in "iu"):
    raise ValueError(f"labels must be ({x.shape[0]},) integers, got {labels.shape} "
                     f"{labels.dtype}")
  meta = index_metadata(record, labels, saved.metadata.get("class_names"),
                        source=[os.path.abspath(p) for p in paths] if len(paths) > 1
                        else os.path.abspath(paths[0]), **(metadata or {}))
  if x.dtype == np.bool_:
    index, x = BinaryIndex(x.shape[1], metadata=meta), np.asarray(pack_bits(x))
  elif x.dtype == np.uint32:
    index = BinaryIndex(nbits or 32 * x.shape[1], metadata=meta)
  elif x.dtype.kind == "f":
    index = FloatIndex(x.shape[1], metadata=meta)
  else:
    raise ValueError(f"features dtype {x.dtype} is not float, uint32 codes or bool bits")
  index.add(x, ids=ids)
  index.save(out)
  return index


def search_index_file(index_path: str, queries: str, k: int, *, out: str | None = None
                      ) -> dict[str, np.ndarray]:
  """{"D", "I" (ids), and "L" (labels of the hits) when the index knows labels} of a .npy of
  queries (float, uint32 codes or bool bits, as the index); saved to `out` (.npz) atomically."""
  index = load_index(index_path)
  q = np.load(queries)
  if isinstance(index, BinaryIndex) and q.dtype == np.bool_:
    q = np.asarray(pack_bits(q))
  d, i = index.search(q, k)
  result = {"D": d, "I": i}
  labels = index.metadata.get("labels")
  if labels is not None:
    result["L"] = np.asarray(labels, np.int64)[protocol.ids_to_positions(index.ids, i)]
  if out:
    with atomic.atomic_write(out, "wb") as f:
      np.savez(f, **result)
  return result


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
