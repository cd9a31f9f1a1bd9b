"""What the config files in configs/ share: where the real data sets are, and loading a sibling
config file by path (ml_collections loads configs by path, so they cannot import each other)."""

import importlib.util
import math
import os
from pathlib import Path
from types import ModuleType

import ml_collections

SHARED_DATASETS_ENV = "CBIR_SHARED_DATASETS"


def shared_datasets_root() -> Path:
  """$CBIR_SHARED_DATASETS, else shared/datasets beside the checkout (the folder holding this
  repository, for the editable install the README uses)."""
  default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
  return Path(os.environ.get(SHARED_DATASETS_ENV) or default)


def shared_dataset(name: str) -> str:
  """The data set folder `name` under `shared_datasets_root()`, or "" when it is absent (configs
  then need an explicit manual_dir)."""
  path = shared_datasets_root() / name
  return str(path) if path.is_dir() else ""


def load_sibling(anchor_file: str, relpath: str) -> ModuleType:
  """Loads the config module at `relpath`, relative to the folder of `anchor_file` (pass the
  calling config's `__file__`), by path."""
  path = os.path.join(os.path.dirname(os.path.abspath(anchor_file)), relpath)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} (from {relpath!r} beside {anchor_file}) "
                            "does not exist")
  name = "_cbir_cfg_" + os.path.splitext(os.path.basename(relpath))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def select_on_validation(model_config, *, test_split: str, patience: int,
                         validation_fraction: float) -> None:
  """Sets a training config to make its decisions on the validation split: evaluate on the
  seeded, stratified `validation_fraction` carved from the training split, stop once it has
  not improved for `patience` + 1 evaluations in a row (0: train the whole schedule), hand on
  the checkpoint best on it, and report `test_split` only once, at that checkpoint."""
  model_config.dataset.validation_fraction = validation_fraction
  model_config.dataset.eval_split = "validation"
  model_config.dataset.test_split = test_split
  model_config.checkpoint_selection = "best"
  model_config.selection_metric = "eval_accuracy"
  model_config.early_stopping_patience = int(patience)
  model_config.early_stopping_min_delta = 0.0


def decision_defaults(model_config) -> None:
  """The training fields a run's decisions and augmentation use, at their defaults (so every
  training config has them and `--config.<field>=...` can set them): augmentation policy
  "flip_crop", no early stopping, the last checkpoint, no test split. See
  `select_on_validation` and `train.trainer.check_selection`."""
  model_config.augment_policy = "flip_crop"
  model_config.early_stopping_patience = 0
  model_config.early_stopping_min_delta = 0.0
  model_config.selection_metric = "eval_accuracy"
  model_config.checkpoint_selection = "last"
  model_config.dataset.test_split = ""


def positive_rates(text: str) -> tuple[float, ...]:
  """"0.1+0.2" -> (0.1, 0.2): distinct finite positive numbers joined by "+" (a config
  option's learning rates); () when `text` is anything else, for the caller to name it."""
  try:
    rates = tuple(float(v) for v in text.split("+"))
  except ValueError:
    return ()
  if not all(math.isfinite(r) and r > 0 for r in rates) or len(set(rates)) != len(rates):
    return ()
  return rates


def recipes_experiment(name: str, scale: str, dataset_name: str, manual_dir: str):
  """The head of a "recipes" experiment (`cbir_jax.experiments.recipes`): its name, kind,
  scale, seed 0 and data set; the caller adds `models` (one training config per recipe, each
  deciding on validation) and `description`."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.kind = "recipes"
  c.scale = scale
  c.seed = 0
  c.dataset = ml_collections.ConfigDict({"name": dataset_name, "manual_dir": manual_dir})
  c.incumbent = ""  # The recipe the configs use now; it wins ties (recipes.choose).
  return c
