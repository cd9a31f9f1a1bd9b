"""Networks for extraction (a restored run or imported weights) and features of a split."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from cbir_jax.data import datasets
from cbir_jax.eval import protocol
from cbir_jax.features import extract as extract_lib
from cbir_jax.features import provenance as provenance_lib
from cbir_jax.models import registry
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
  """The model of `train_workdir` at checkpoint `step` (None: the step the finished run
  selected, see `trainer.restore`, else the newest)."""
  workdir = os.path.abspath(train_workdir)
  if step is None:
    step = trainer.default_step(workdir)
  model, variables, config = trainer.restore(workdir, step)
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
