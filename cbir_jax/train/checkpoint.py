"""orbax checkpoints of the TrainState: periodic, keep last N plus the best, model check, resume.

Each checkpoint is `<directory>/<step>/` with the items `state` (the whole TrainState: params,
batch_stats, opt_state, step, rng), `meta` (JSON: model name, its kwargs, num_classes, input
shape, data set) and `data` (the grain training iterator's state, one JSON file per process,
`grain.checkpoint.CheckpointHandler`; absent in checkpoints written before it existed). Saves are atomic: orbax writes `<step>.orbax-checkpoint-tmp-<time>` and renames
it to `<step>` only when every file is written (`AtomicRenameTemporaryPath`; on object stores
without rename it writes a commit-success file instead), so a crash mid-save leaves no
half-written step that a restart could pick up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

from cbir_jax.train.state import TrainState

# The `meta` keys compared on resume: a checkpoint of another model cannot be resumed.
_IDENTITY_KEYS = ("model", "model_kwargs", "num_classes", "input_shape")


class Checkpointer:
  """A thin wrapper of `ocp.CheckpointManager` with the project's retention and metadata.

  Retention: the newest `keep` checkpoints, plus the one with the best `best_metric` among those
  saved with metrics (end-of-epoch evaluations), even when it is older.

  Args:
    directory: checkpoint folder (created; usually `<workdir>/checkpoints`).
    keep: number of most recent checkpoints kept (>= 1).
    best_metric: key of the `metrics` dict passed to `save` that ranks checkpoints.
    best_mode: "max" or "min".
    async_save: write in a background thread (call `wait` or `close` before reading).
    read_only: only read (the directory is neither created nor changed).
  """

  def __init__(self, directory: str, *, keep: int = 2, best_metric: str = "eval_accuracy",
               best_mode: str = "max", async_save: bool = True, read_only: bool = False):
    if int(keep) < 1:
      raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.best_metric = best_metric
    self._best_mode = best_mode
    policy = ocp_managers.AnyPreservationPolicy([
        ocp_managers.LatestN(n=int(keep)),
        ocp_managers.BestN(get_metric_fn=lambda m: float(m[best_metric]),
                           reverse=best_mode == "min", n=1,
                           keep_checkpoints_without_metrics=False),
    ])
    # best_fn makes orbax write each checkpoint's metrics into it (item `metrics`), so the best
    # one is known again after a restart; retention is the policy above.
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=not read_only,
                                           best_fn=lambda m: float(m[best_metric]),
                                           best_mode=best_mode,
                                           read_only=read_only,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta", "data"),
                                          options=options)

  def all_steps(self) -> list[int]:
    """Steps of the complete checkpoints on disk, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def save(self, state: TrainState, meta: dict[str, Any],
           metrics: dict[str, float] | None = None, *,
           data_iterator: grain.DatasetIterator | None = None) -> None:
    """Saves `state` at step `int(state.step)` with `meta`; `metrics` ranks it for "best".

    `data_iterator`: the grain iterator feeding training; its state as of this call (the
    next batch it yields) is saved as item `data`, even when the save completes in the
    background after the iterator moved on.
    """
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      snapshot = _IteratorState(json.dumps(data_iterator.get_state()).encode())
      items["data"] = grain.checkpoint.CheckpointSave(snapshot)
    self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)

  def has_data(self, step: int | None = None) -> bool:
    """Whether checkpoint `step` (default: latest) holds the data iterator's state."""
    step = self._checked_step(step)
    return os.path.isdir(os.path.join(self.directory, str(step), "data"))

  def restore_data(self, iterator: grain.DatasetIterator, step: int | None = None
                   ) -> grain.DatasetIterator:
    """Sets `iterator` (a fresh one of the same pipeline) to the state saved with `step`.

    Raises:
      FileNotFoundError: the checkpoint holds no `data` item (see `has_data`).
    """
    step = self._checked_step(step)
    if not self.has_data(step):
      raise FileNotFoundError(f"checkpoint {os.path.join(self.directory, str(step))} holds no "
                              "data iterator state")
    return self._manager.restore(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(iterator)))["data"]

  def read_meta(self, step: int | None = None) -> dict[str, Any]:
    """The `meta` JSON of checkpoint `step` (default: the latest)."""
    step = self._checked_step(step)
    return dict(self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"])

  def restore(self, abstract_state: Any, step: int | None = None,
              expected_meta: dict[str, Any] | None = None) -> TrainState:
    """Restores checkpoint `step` (default: latest) into the structure/shardings of the target.

    Args:
      abstract_state: a TrainState (or `jax.eval_shape` of one, with shardings) of the same
        model and optimizer; values are read into its structure, dtypes and shardings.
      step: which checkpoint; None: the latest.
      expected_meta: when given, its model identity (model, model_kwargs, num_classes,
        input_shape) must equal the checkpoint's.

    Returns:
      The restored TrainState.

    Raises:
      FileNotFoundError: no checkpoint (or no such step) in the directory.
      ValueError: the checkpoint was written for a different model; the message names both.
    """
    step = self._checked_step(step)
    if expected_meta is not None:
      check_same_model(self.read_meta(step), expected_meta, os.path.join(self.directory,
                                                                         str(step)))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def _checked_step(self, step: int | None) -> int:
    steps = self._manager.all_steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
      return max(steps)
    if step not in steps:
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; found "
                              f"{sorted(steps)}")
    return int(step)

  def best_step(self) -> int | None:
    """The kept checkpoint with the best `best_metric` among those saved with metrics, or
    None (no checkpoint was saved with metrics)."""
    scored = []
    for step in self.all_steps():
      metrics = self._manager.metrics(step)
      if metrics and self.best_metric in metrics:
        scored.append((float(metrics[self.best_metric]), step))
    if not scored:
      return None
    sign = 1.0 if self._best_mode == "max" else -1.0
    # The best value; among equal values the earliest step (a later one did not improve).
    return max(scored, key=lambda vs: (sign * vs[0], -vs[1]))[1]

  def wait(self) -> None:
    """Blocks until a background save has finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


@dataclasses.dataclass(frozen=True)
class _IteratorState:
  """A grain iterator's state frozen at `save` (grain's handler calls `get_state()`)."""
  state: bytes

  def get_state(self) -> bytes:
    return self.state


def _describe(meta: dict[str, Any]) -> str:
  return (f"model {meta.get('model')!r} (kwargs {meta.get('model_kwargs')}, num_classes "
          f"{meta.get('num_classes')}, input shape {meta.get('input_shape')})")


def check_same_model(found: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  """Raises ValueError naming both models unless `found` and `expected` describe the same one."""
  normalise = lambda m: {k: json_compatible(m.get(k)) for k in _IDENTITY_KEYS}
  if normalise(found) != normalise(expected):
    raise ValueError(f"checkpoint {where} was written for {_describe(found)}, but the config "
                     f"asks for {_describe(expected)}; use another --workdir or the matching "
                     "config")


def json_compatible(value: Any) -> Any:
  """`value` with tuples as lists and dict keys as str, as it comes back from JSON."""
  if isinstance(value, (list, tuple)):
    return [json_compatible(v) for v in value]
  if isinstance(value, dict):
    return {str(k): json_compatible(v) for k, v in value.items()}
  return value
