"""train_and_evaluate(config, workdir): data-parallel training with exact resume; restore(workdir).

Workdir layout: `config.json` (the run's config), `checkpoints/<step>/` (orbax), `metrics.jsonl`
(training and evaluation metrics; see `metric_log`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable

from absl import logging
import flax.linen as nn
from flax.training import early_stopping
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cbir_jax import atomic
from cbir_jax.data import datasets, input_pipeline
from cbir_jax.models import pretrained, registry
from cbir_jax.train import checkpoint as checkpoint_lib
from cbir_jax.train import mesh as mesh_lib
from cbir_jax.train import metric_log, optim, state as state_lib, steps


@dataclasses.dataclass
class TrainResult:
  """What `train_and_evaluate` returns.

  Attributes:
    state: the selected TrainState (replicated over the mesh): the last one, or with
      `checkpoint_selection="best"` the checkpoint best on the validation split.
    model: the Linen module (`model.apply(state.variables(), x, ...)`).
    metrics: final scalars: `train_loss`, `train_accuracy` (mean over the last log interval),
      `eval_loss`, `eval_accuracy` (the evaluation split, when configured; of the selected
      checkpoint), `steps` (trained), `selected_step`, `stopped_early` (1.0 / 0.0),
      `test_loss`, `test_accuracy` (`dataset.test_split`, reported only, when configured),
      `images_per_sec`, `step_seconds` (excluding the first, compiling step), `train_seconds`.
    train_data, eval_data: the arrays trained on and evaluated on (None: no evaluation), so a
      caller that goes on to extract features need not load them again.
  """
  state: state_lib.TrainState
  model: nn.Module
  metrics: dict[str, float]
  train_data: datasets.ImageArrays | None = None
  eval_data: datasets.ImageArrays | None = None


def model_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config.model.kwargs` as a dict: the registry model's own field names (e.g. LeNet-L's K
  is `lk_features`), passed through unchanged."""
  kwargs = config.model.get("kwargs", None)
  return dict(kwargs.to_dict() if hasattr(kwargs, "to_dict") else (kwargs or {}))


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The registry model named by `config.model.name` with `model_kwargs(config)`."""
  return registry.get_model(config.model.name, num_classes=int(num_classes),
                            **model_kwargs(config))


def splits(config: ml_collections.ConfigDict) -> tuple[str, str]:
  """(train split, eval split or ""): dataset.train_split/eval_split, else database/query."""
  ds = config.dataset
  train = ds.get("train_split", None) or ds.get("database_split", None) or "train"
  held_out = ds.get("eval_split", None)
  if held_out is None:
    held_out = ds.get("query_split", None) or "test"
  return train, held_out


SELECTION_METRICS = {"eval_accuracy": "max", "eval_loss": "min"}
SELECTION_FILE = "selection.json"


def check_selection(config: ml_collections.ConfigDict) -> None:
  """Checks early stopping and checkpoint selection: both decide on the evaluation split, so
  they require it to be the validation split carved from the training side (a query or test
  split never decides anything); ValueError names the field and its value."""
  patience = config.get("early_stopping_patience", 0)
  if isinstance(patience, bool) or int(patience) != float(patience) or int(patience) < 0:
    raise ValueError(f"early_stopping_patience must be an int >= 0 (0: off), got {patience!r}")
  if float(config.get("early_stopping_min_delta", 0.0)) < 0:
    raise ValueError("early_stopping_min_delta must be >= 0, got "
                     f"{config.get('early_stopping_min_delta')}")
  selection = config.get("checkpoint_selection", "last")
  if selection not in ("last", "best"):
    raise ValueError(f"checkpoint_selection must be 'last' or 'best', got {selection!r}")
  metric = config.get("selection_metric", "eval_accuracy")
  if metric not in SELECTION_METRICS:
    raise ValueError(f"selection_metric must be one of {sorted(SELECTION_METRICS)}, got "
                     f"{metric!r}")
  _, eval_split = splits(config)
  deciding = [f"early_stopping_patience={int(patience)}"] if int(patience) > 0 else []
  deciding += ["checkpoint_selection='best'"] if selection == "best" else []
  if deciding and eval_split != datasets.VALIDATION:
    raise ValueError(f"{' and '.join(deciding)} decide on the evaluation split, which must be "
                     f"the validation split carved from the training side: set "
                     f"dataset.eval_split='validation' and dataset.validation_fraction > 0 "
                     f"(got eval_split={eval_split!r}; query and test images never decide)")
  test_split = config.dataset.get("test_split", "") or ""
  if test_split and test_split == datasets.VALIDATION:
    raise ValueError("dataset.test_split reports a split the run never decides on; got "
                     "'validation'")


def early_stopping_from_log(path: str, up_to_step: int, *, patience: int, min_delta: float,
                            metric: str) -> early_stopping.EarlyStopping:
  """flax's EarlyStopping replayed over the evaluations in metrics.jsonl up to `up_to_step`
  (the resumed checkpoint), so a resumed run stops where an uninterrupted one would.
  Records past `up_to_step` (trained after the last checkpoint, then lost) are ignored; a step
  evaluated twice counts once (the last record)."""
  stopper = early_stopping.EarlyStopping(min_delta=float(min_delta), patience=int(patience))
  if not os.path.exists(path):
    return stopper
  evaluated = {}
  for record in metric_log.read_metrics(path):
    if metric in record and int(record["step"]) <= up_to_step:
      evaluated[int(record["step"])] = float(record[metric])
  for step in sorted(evaluated):
    stopper = stopper.update(_minimised(evaluated[step], metric))
  return stopper


def _minimised(value: float, metric: str) -> float:
  return -value if SELECTION_METRICS[metric] == "max" else value


def default_step(workdir: str) -> int | None:
  """The checkpoint `restore(workdir)` reads: the selected step (`selected_step`), else the
  newest checkpoint's; None when there is no checkpoint."""
  step = selected_step(workdir)
  if step is not None:
    return step
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    return None
  ckpt = checkpoint_lib.Checkpointer(directory, async_save=False, read_only=True)
  try:
    return ckpt.latest_step()
  finally:
    ckpt.close()


def selected_step(workdir: str) -> int | None:
  """The checkpoint step the run in `workdir` selected (`selection.json`, written when
  training ends), or None (an unfinished run, or one written before selection existed)."""
  path = os.path.join(os.path.abspath(workdir), SELECTION_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return int(json.load(f)["step"])


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the fields train_and_evaluate needs, before any work; ValueError names the field."""
  for field in ("model", "dataset", "batch_size", "optimizer", "seed"):
    if field not in config:
      raise ValueError(f"config has no field {field!r}")
  if config.model.name not in registry.list_models():
    raise ValueError(f"unknown model {config.model.name!r}; valid models: "
                     f"{', '.join(registry.list_models())}")
  datasets.check_dataset_config(config.dataset, splits(config))
  if int(config.batch_size) < 1:
    raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
  num_steps, num_epochs = int(config.get("num_steps", -1)), config.get("num_epochs", -1)
  if num_steps <= 0 and (num_epochs is None or float(num_epochs) <= 0):
    raise ValueError(f"set num_steps > 0 or num_epochs > 0, got num_steps={num_steps}, "
                     f"num_epochs={num_epochs}")
  if config.get("augment_policy", "flip_crop") not in input_pipeline.AUGMENT_POLICIES:
    raise ValueError(f"augment_policy must be one of {input_pipeline.AUGMENT_POLICIES}, got "
                     f"{config.get('augment_policy')!r}")
  if not 0 <= float(config.get("label_smoothing", 0.0)) < 1:
    raise ValueError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    if int(config.get(field, 1)) < 1:
      raise ValueError(f"{field} must be >= 1, got {config.get(field)}")
  check_selection(config)
  # Field and value checks (warmup against num_steps when it is known before loading data).
  optim.make_optimizer(config.optimizer, num_steps if num_steps > 0 else 10 ** 9)
  try:
    build_model(config, 2)
  except TypeError as e:
    raise ValueError(f"model.kwargs {model_kwargs(config)} do not fit model "
                     f"{config.model.name}: {e}") from e
  size = datasets.config_image_size(config.dataset.get("image_size", None))
  if size is not None:  # A size the model cannot take fails here, before the data is loaded.
    registry.check_input_size(config.model.name, size, warn=False, **model_kwargs(config))


def _load_trunk(config: ml_collections.ConfigDict):
  """`config.init_from`'s imported weights (`models.pretrained.Pretrained`), or None.

  The source model is `init_from_model` or the config's model without its "dfs_" prefix; the
  variant of our model that matches the file (e.g. torchvision's ResNet padding) is written into
  `model.kwargs` (a DFS-Net's `backbone_kwargs`), and the file's preprocessing into
  `config.preprocessing`, so config.json restores exactly what was trained.
  """
  path = config.get("init_from", "") or ""
  if not path:
    return None
  name = config.model.name
  source = config.get("init_from_model", "") or (name[len("dfs_"):] if name.startswith("dfs_")
                                                  else name)
  if os.path.isdir(path):  # One of our own training runs (e.g. pretrained on another set).
    trunk = _own_run(path, source)
  else:
    trunk = pretrained.load_pretrained(path, source,
                                       format=config.get("init_from_format") or None)
  with config.unlocked():
    if "kwargs" not in config.model or config.model.kwargs is None:
      config.model.kwargs = ml_collections.ConfigDict()
    if name.startswith("dfs_"):
      kwargs = dict(config.model.kwargs.get("backbone_kwargs", None) or {})
      kwargs.update(trunk.model_kwargs)
      config.model.kwargs.backbone_kwargs = kwargs
    else:
      for key, value in trunk.model_kwargs.items():
        config.model.kwargs[key] = value
    if trunk.preprocessing is not None:
      config.preprocessing = trunk.preprocessing.to_json()
  return trunk


def _own_run(workdir: str, source: str) -> pretrained.Pretrained:
  """A cbir_jax training workdir as `init_from`: its selected checkpoint (`restore`), checked to
  be model `source`; its model fields and preprocessing (None: the default normalisation)
  carry over; `source["sha256"]` digests the checkpoint's files, so the provenance names the
  exact weights."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise ValueError(f"init_from={workdir!r} is a folder but not a training workdir (no "
                     "config.json); give a weights file or a cbir_jax run folder")
  model, variables, run_config = restore(workdir)
  if run_config.model.name != source:
    raise ValueError(f"init_from={workdir!r} holds a {run_config.model.name!r} run, but "
                     f"{source!r} weights are needed (set init_from_model to start another "
                     "model from it)")
  step = default_step(workdir)
  digest = hashlib.sha256()
  state_dir = os.path.join(workdir, "checkpoints", str(step), "state")
  for root, _, files in sorted(os.walk(state_dir)):
    for name in sorted(files):
      digest.update(os.path.relpath(os.path.join(root, name), state_dir).encode())
      with open(os.path.join(root, name), "rb") as f:
        digest.update(f.read())
  kwargs = model_kwargs(run_config)
  return pretrained.Pretrained(
      model=model, variables=jax.device_get(variables), preprocessing=preprocessing_of(run_config),
      source={"file": f"{os.path.abspath(workdir)}@{step}", "sha256": digest.hexdigest(),
              "format": "cbir_jax", "framework": "cbir_jax", "dropped": []},
      format="cbir_jax", variant=str(kwargs.get("variant", "default")), model_name=source,
      model_kwargs=kwargs, num_classes=int(model.num_classes))


def _with_frozen_trunk(tx, model, model_name: str, input_shape, freeze: int):
  """`tx` with the imported trunk frozen for `freeze` steps (`optim.freeze_for`); the trunk is
  where `pretrained.merge_pretrained` puts it (`pretrained.trunk_mask`: every parameter but the
  classifier, under "backbone" for a DFS-Net). Structural, so a restore needs no weights file."""
  if freeze <= 0:
    return tx
  params = jax.eval_shape(lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
      jnp.zeros(input_shape, jnp.float32), train=False))["params"]
  prefix = ("backbone",) if model_name.startswith("dfs_") else ()
  return optim.freeze_for(tx, pretrained.trunk_mask(params, prefix), freeze)


def preprocessing_of(config: ml_collections.ConfigDict):
  """The `models.pretrained.Preprocessing` a run was trained with, or None (`normalize`)."""
  text = config.get("preprocessing", "") or ""
  return pretrained.Preprocessing.from_json(text) if text else None


def _load(config: ml_collections.ConfigDict, split: str) -> datasets.ImageArrays:
  return datasets.load_split(config.dataset, split, seed=int(config.seed))


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  atomic.write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))


def _abstract_state(create: Callable[[jax.Array], state_lib.TrainState], rng: jax.Array,
                    sharding: jax.sharding.Sharding) -> Any:
  """Shapes/dtypes/shardings of `create(rng)` without computing it (restore target)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      jax.eval_shape(create, rng))


def initial_state(create: Callable[[jax.Array], state_lib.TrainState], rng: jax.Array,
                  sharding: jax.sharding.Sharding) -> state_lib.TrainState:
  """`create(rng)` jitted with replicated outputs, using the non-partitionable threefry.

  The parameters are replicated, so every device draws all of them either way; the classic
  (non-partitionable) threefry lowering compiles 2-3x faster on CPU (measured: LeNet-L init
  1.6-1.9 s instead of 3.8-3.9 s of CPU time, a tiny ResNet 4 s instead of 11 s). Dropout keys
  in the train step keep JAX's default.
  """
  with jax.threefry_partitionable(False):
    return jax.jit(create, out_shardings=sharding)(rng)


def evaluate(state: state_lib.TrainState, eval_fn: Callable[..., dict[str, jax.Array]],
             images: np.ndarray, labels: np.ndarray, *, batch_size: int,
             sharding: jax.sharding.NamedSharding,
             preprocess: Callable[[np.ndarray], Any] | None = None) -> dict[str, float]:
  """Loss and accuracy of `state` on all of (images, labels): {"eval_loss", "eval_accuracy"}.

  Args:
    state: the TrainState.
    eval_fn: `steps.jit_eval_step(...)`.
    images: uint8[n, h, w, c]; labels: int[n] (each process passes the whole split).
    batch_size: global eval batch (the last one padded and masked).
    sharding: the batch sharding.
    preprocess: uint8 -> network input (imported weights' preprocessing); None: normalize.
  """
  totals = None
  for batch in input_pipeline.eval_batches(images, labels, batch_size=batch_size,
                                           preprocess=preprocess):
    sums = eval_fn(state, mesh_lib.global_batch(batch, sharding))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  count = max(float(totals["count"]), 1.0)
  return {"eval_loss": float(totals["loss_sum"]) / count,
          "eval_accuracy": float(totals["correct"]) / count}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_at_step: int | None = None) -> TrainResult:
  """Trains `config.model` on `config.dataset`, evaluating the held-out split; resumes.

  Data parallel over every device (`mesh.make_mesh()`): the global batch `config.batch_size`
  is split over devices (each process feeds its slice), parameters are replicated. When
  `<workdir>/checkpoints` holds a checkpoint of the same model, training continues from it
  exactly: the data order is a function of (seed, step) and the step's randomness of
  (rng, step), both restored with the state.

  Config fields (see configs/*.py): model.name, model.kwargs, dataset.{name, manual_dir,
  image_size, train_split, eval_split (or database_split/query_split; "" = no evaluation)},
  batch_size, eval_batch_size (-1: batch_size), num_epochs or num_steps (-1: from epochs),
  optimizer.* (see `optim.make_optimizer`), label_smoothing, aux_loss_weight, augment,
  augment_policy ("flip_crop" or "strong", see `input_pipeline.train_batches`), seed,
  log_every_steps, eval_every_steps (-1: every epoch), checkpoint_every_steps,
  keep_checkpoints, distributed ("auto"/"on"/"off"); and the decisions made on the validation
  split (`dataset.eval_split="validation"`, required by these; see `check_selection`):
  early_stopping_patience (0: off; flax's EarlyStopping: training stops at the evaluation that
  is the (patience+1)-th in a row without an improvement of more than early_stopping_min_delta),
  selection_metric ("eval_accuracy" or "eval_loss"; also ranks the kept best checkpoint),
  checkpoint_selection ("last" or "best": the state returned, recorded in selection.json and
  restored by default by `restore`); dataset.test_split: a split evaluated once at the
  selected state and only reported (test_accuracy), never used for a decision.

  Args:
    config: the run's ConfigDict.
    workdir: output folder (created): config.json, checkpoints/, metrics.jsonl and, when
      training ends, selection.json (the selected step).
    stop_at_step: stop once this step is reached (after checkpointing it), as a preempted job
      would; a later call with the same workdir resumes from there. None: train to the end.

  Returns:
    TrainResult(state, model, metrics).

  Raises:
    ValueError: bad config (names the field), or a checkpoint of another model in workdir.
  """
  validate_config(config)
  mesh_lib.initialize_distributed(config.get("distributed", "auto"))
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0
  train_split, eval_split = splits(config)
  train = _load(config, train_split)
  held_out = _load(config, eval_split) if eval_split else None
  num_classes = len(train.class_names)
  trunk = _load_trunk(config)  # Imported weights to start from (sets the matching variant).
  preprocess = (None if trunk is None or trunk.preprocessing is None
                else trunk.preprocessing.apply)
  # The input-size guard, before any compilation: an error where the model would produce
  # nothing at this size, a loud warning where its last feature map is below the rule.
  registry.check_input_size(config.model.name, train.images.shape[1:3],
                            channels=train.images.shape[3], **model_kwargs(config))
  model = build_model(config, num_classes)

  batch_size = int(config.batch_size)
  steps_per_epoch = len(train) // batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"batch_size {batch_size} exceeds the {len(train)} training examples")
  num_steps = int(config.get("num_steps", -1))
  if num_steps <= 0:
    num_steps = int(round(float(config.num_epochs) * steps_per_epoch))
  eval_every = int(config.get("eval_every_steps", -1))
  eval_every = steps_per_epoch if eval_every <= 0 else eval_every
  eval_batch_size = int(config.get("eval_batch_size", -1))
  eval_batch_size = batch_size if eval_batch_size <= 0 else eval_batch_size

  mesh = mesh_lib.make_mesh()
  mesh_lib.check_batch_size(batch_size, mesh)
  mesh_lib.check_batch_size(eval_batch_size, mesh, "eval_batch_size")
  replicated, data_sharding = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  input_shape = (1,) + tuple(train.images.shape[1:])
  tx = optim.make_optimizer(config.optimizer, num_steps)
  schedule = optim.make_schedule(config.optimizer, num_steps)
  rng = jax.random.PRNGKey(int(config.seed))
  freeze = int(config.get("freeze_trunk_steps", 0) or 0) if trunk is not None else 0
  tx = _with_frozen_trunk(tx, model, config.model.name, input_shape, freeze)
  create = lambda rng: state_lib.create_train_state(model, tx, rng, input_shape)
  meta = {"model": config.model.name,
          "model_kwargs": checkpoint_lib.json_compatible(model_kwargs(config)),
          "num_classes": num_classes, "input_shape": list(input_shape),
          "dataset": config.dataset.name, "num_steps": num_steps}
  if trunk is not None:  # Where the starting weights came from, in every checkpoint.
    meta["init_from"] = {"file": trunk.source["file"], "sha256": trunk.source["sha256"],
                         "format": trunk.format, "variant": trunk.variant,
                         "freeze_trunk_steps": freeze}

  metric = config.get("selection_metric", "eval_accuracy")
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     keep=int(config.get("keep_checkpoints", 2)),
                                     best_metric=metric, best_mode=SELECTION_METRICS[metric])
  if ckpt.latest_step() is not None:
    checkpoint_lib.check_same_model(ckpt.read_meta(), meta, os.path.join(
        ckpt.directory, str(ckpt.latest_step())))
    state = ckpt.restore(_abstract_state(create, rng, replicated))
    logging.info("resumed from %s at step %d", ckpt.directory, int(state.step))
  else:
    state = initial_state(create, rng, replicated)
    if trunk is not None:
      merged, _ = pretrained.merge_pretrained(state.variables(), trunk.variables)
      merged = jax.device_put(merged, replicated)
      state = state.replace(params=merged["params"],
                            batch_stats=merged.get("batch_stats", state.batch_stats))
      logging.info("started from %s (%s, sha256 %s)", trunk.source["file"], trunk.format,
                   trunk.source["sha256"][:12])
  if lead:
    _write_config(config, workdir)
  start_step = int(jax.device_get(state.step))
  patience = int(config.get("early_stopping_patience", 0))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  stopper = early_stopping_from_log(metrics_path, start_step, patience=patience,
                                    min_delta=float(config.get("early_stopping_min_delta", 0.0)),
                                    metric=metric) if patience > 0 else None
  if stopper is not None and stopper.should_stop:  # A resumed run that had stopped early.
    logging.info("early stopping: %s stopped improving before step %d; not training further",
                 metric, start_step)
    num_steps = start_step
  end_step = num_steps if stop_at_step is None else max(min(num_steps, int(stop_at_step)),
                                                        start_step)
  test_split = config.dataset.get("test_split", "") or ""

  train_step = steps.jit_train_step(replicated, data_sharding,
                                    label_smoothing=float(config.get("label_smoothing", 0.0)),
                                    aux_loss_weight=float(config.get("aux_loss_weight", 0.0)))
  eval_fn = steps.jit_eval_step(replicated, data_sharding)
  batches = input_pipeline.train_batches(train.images, train.labels, batch_size=batch_size,
                                         seed=int(config.seed), start_step=start_step,
                                         augment=bool(config.get("augment", False)),
                                         augment_policy=config.get("augment_policy",
                                                                   "flip_crop"),
                                         preprocess=preprocess)
  if start_step and ckpt.has_data():  # The iterator state saved with the model.
    batches = ckpt.restore_data(batches)
    if input_pipeline.batch_position(batches) != start_step:
      raise ValueError(f"checkpoint {ckpt.directory}/{ckpt.latest_step()} holds a data iterator "
                       f"at step {input_pipeline.batch_position(batches)} but a model at step "
                       f"{start_step}; the checkpoint is inconsistent")
  log_every = int(config.get("log_every_steps", 50))
  checkpoint_every = int(config.get("checkpoint_every_steps", 1000))
  log = metric_log.MetricLog(metrics_path, total_steps=num_steps,
                             initial_step=start_step, enabled=lead)
  logging.info("training %s on %s (%d examples, %d classes) for steps %d..%d on %d device(s), "
               "global batch %d", config.model.name, config.dataset.name, len(train),
               num_classes, start_step, num_steps, mesh.devices.size, batch_size)

  results: dict[str, float] = {}
  pending: list[dict[str, jax.Array]] = []
  interval_start, interval_steps, steady_seconds, steady_steps = time.perf_counter(), 0, 0.0, 0
  train_start = time.perf_counter()
  first_step = True
  stop_now = False
  try:
    for step in range(start_step, end_step):
      state, step_metrics = train_step(state, mesh_lib.global_batch(next(batches), data_sharding))
      pending.append(step_metrics)
      done = step + 1
      interval_steps += 1
      log.advance()
      if first_step:  # Time the compiling step apart from the steady-state rate.
        jax.block_until_ready(step_metrics)
        results["first_step_seconds"] = time.perf_counter() - interval_start
        interval_start, interval_steps, first_step = time.perf_counter(), 0, False
      if done % log_every == 0 or done == end_step:
        host = jax.device_get(pending)
        pending = []
        elapsed = time.perf_counter() - interval_start
        summary = {"loss": float(np.mean([m["loss"] for m in host])),
                   "accuracy": float(np.mean([m["accuracy"] for m in host])),
                   "learning_rate": float(schedule(done - 1))}
        if interval_steps:
          summary["step_seconds"] = elapsed / interval_steps
          summary["images_per_sec"] = interval_steps * batch_size / elapsed
          steady_seconds += elapsed
          steady_steps += interval_steps
        results["train_loss"], results["train_accuracy"] = summary["loss"], summary["accuracy"]
        log.write(done, summary)
        interval_start, interval_steps = time.perf_counter(), 0
      eval_metrics = None
      if held_out is not None and (done % eval_every == 0 or done == num_steps):
        pause = time.perf_counter()
        eval_metrics = evaluate(state, eval_fn, held_out.images, held_out.labels,
                                batch_size=eval_batch_size, sharding=data_sharding,
                                preprocess=preprocess)
        log.write(done, eval_metrics)
        results.update(eval_metrics)
        if stopper is not None:
          stopper = stopper.update(_minimised(eval_metrics[metric], metric))
        interval_start += time.perf_counter() - pause
      stop_now = stopper is not None and stopper.should_stop
      if (eval_metrics is not None or done % checkpoint_every == 0 or done == end_step
          or stop_now):
        pause = time.perf_counter()
        ckpt.save(state, meta, metrics=eval_metrics, data_iterator=batches)
        interval_start += time.perf_counter() - pause
      if stop_now:
        logging.info("early stopping at step %d: %s has not improved by more than %g for %d "
                     "evaluations (best %.4g)", done, metric, stopper.min_delta,
                     stopper.patience_count, abs(stopper.best_metric))
        end_step = done
        break
    finished = stop_now or end_step == num_steps
    state, chosen = _selected_state(config, ckpt, state, create, rng, replicated, finished)
    if held_out is not None and ("eval_accuracy" not in results or chosen != end_step):
      results.update(evaluate(state, eval_fn, held_out.images, held_out.labels,
                              batch_size=eval_batch_size, sharding=data_sharding,
                              preprocess=preprocess))
    if test_split and finished:  # Reported only; evaluated once, at the selected state.
      test = _load(config, test_split)
      scores = evaluate(state, eval_fn, test.images, test.labels, batch_size=eval_batch_size,
                        sharding=data_sharding, preprocess=preprocess)
      results.update({"test_loss": scores["eval_loss"], "test_accuracy": scores["eval_accuracy"]})
    results["selected_step"] = float(chosen)
    results["stopped_early"] = float(num_steps < int(meta["num_steps"]) or
                                     (stopper is not None and stopper.should_stop))
    if finished and lead:
      atomic.write_json(os.path.join(workdir, SELECTION_FILE),
                        {"step": int(chosen), "rule": config.get("checkpoint_selection", "last"),
                         "metric": metric, "stopped_early": bool(results["stopped_early"]),
                         "trained_steps": int(end_step), "planned_steps": int(meta["num_steps"])})
  finally:
    batches.close()  # Stops grain's prefetch thread.
    log.close()
    ckpt.close()
  results["steps"] = float(end_step)
  results["train_seconds"] = time.perf_counter() - train_start
  if steady_steps:
    results["step_seconds"] = steady_seconds / steady_steps
    results["images_per_sec"] = steady_steps * batch_size / steady_seconds
  return TrainResult(state=state, model=model, metrics=results, train_data=train,
                     eval_data=held_out)


def _selected_state(config, ckpt, state, create, rng, sharding, finished: bool):
  """(state, step) the run hands on: the last state, or with checkpoint_selection="best" (once
  training has finished) the kept checkpoint best on the validation split."""
  last = int(jax.device_get(state.step))
  if config.get("checkpoint_selection", "last") != "best" or not finished:
    return state, last
  ckpt.wait()
  best = ckpt.best_step()
  if best is None or best == last:
    return state, last
  logging.info("checkpoint selection: step %d is best on the validation split (%s)", best,
               ckpt.best_metric)
  return ckpt.restore(_abstract_state(create, rng, sharding), best), best


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was started with (`<workdir>/config.json`)."""
  path = os.path.join(os.path.abspath(workdir), "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir "
                            "(train_and_evaluate writes config.json there)")
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  # Run folders written before LeNet-L's K had one name stored it as model.kwargs.k; their
  # checkpoints already record lk_features, so the old config.json is read in today's terms.
  kwargs = (raw.get("model") or {}).get("kwargs") or {}
  if raw.get("model", {}).get("name") == "lenet_l" and "k" in kwargs:
    kwargs["lk_features"] = kwargs.pop("k")
  return ml_collections.ConfigDict(raw)


def restore(workdir: str, step: int | None = None) -> tuple[nn.Module, dict[str, Any],
                                                             ml_collections.ConfigDict]:
  """The model, its variables and the config of checkpoint `step` in workdir; None: the step
  the finished run selected (selection.json: the last, or the best on validation), else the
  newest checkpoint.

  Returns:
    (model, variables, config): `model.apply(variables, x, train=False, features=...)`;
    variables = {"params": ..., "batch_stats": ...} ("batch_stats" only for BatchNorm models).

  Raises:
    FileNotFoundError: no config.json or no checkpoint in `workdir`.
    ValueError: config.json names another model than the checkpoint (the message names both).
  """
  config = load_config(workdir)
  if step is None:
    step = selected_step(workdir)
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints folder {directory}: nothing was trained there")
  ckpt = checkpoint_lib.Checkpointer(directory, async_save=False, read_only=True)
  try:
    meta = ckpt.read_meta(step)
    # config.json may have been edited (or copied from another run): the checkpoint decides.
    expected = dict(meta, model=config.model.name,
                    model_kwargs=checkpoint_lib.json_compatible(model_kwargs(config)))
    checkpoint_lib.check_same_model(meta, expected, os.path.join(
        directory, str(step if step is not None else ckpt.latest_step())))
    model = build_model(config, meta["num_classes"])
    tx = optim.make_optimizer(config.optimizer, int(meta["num_steps"]))
    tx = _with_frozen_trunk(tx, model, config.model.name, tuple(meta["input_shape"]),
                            int((meta.get("init_from") or {}).get("freeze_trunk_steps", 0)))
    create = lambda rng: state_lib.create_train_state(model, tx, rng, tuple(meta["input_shape"]))
    sharding = mesh_lib.replicated(mesh_lib.make_mesh(jax.local_devices()))
    state = ckpt.restore(_abstract_state(create, jax.random.PRNGKey(0), sharding), step)
  finally:
    ckpt.close()
  return model, state.variables(), config
