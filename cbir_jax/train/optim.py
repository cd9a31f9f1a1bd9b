"""optax optimizers and learning-rate schedules built from a config's `optimizer` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")

# Defaults for the optional fields of `config.optimizer` (the contract's required ones are
# name, learning_rate, weight_decay, momentum, schedule, warmup_steps, grad_clip_norm).
_DEFAULTS = {
    "name": "sgd",
    "learning_rate": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "b1": 0.9,
    "b2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "schedule": "constant",
    "warmup_steps": 0,                  # linear warmup length in steps, or
    "warmup_fraction": 0.0,             # ... as a fraction of the run's total steps (not both).
    "decay_boundaries": (0.5, 0.75),   # "step": fractions of the run's TOTAL steps.
    "decay_factor": 0.1,                # "step": lr multiplier at each boundary.
    "end_learning_rate_factor": 0.0,    # "cosine": final lr = factor * learning_rate.
    "grad_clip_norm": 0.0,              # <= 0: no clipping.
}


def _fields(opt_config: Mapping[str, Any] | Any) -> dict[str, Any]:
  """The optimizer section as a plain dict with defaults filled in; unknown keys rejected."""
  given = dict(opt_config.to_dict() if hasattr(opt_config, "to_dict") else opt_config)
  unknown = sorted(set(given) - set(_DEFAULTS))
  if unknown:
    raise ValueError(f"unknown optimizer field(s) {unknown}; valid fields: {sorted(_DEFAULTS)}")
  return {**_DEFAULTS, **given}


def warmup_length(opt_config: Mapping[str, Any] | Any, total_steps: int) -> int:
  """Warmup steps of a run of `total_steps`: `warmup_steps`, or `round(warmup_fraction *
  total_steps)` (Python's round; a short run gets a short warmup).

  Raises:
    ValueError: both fields set (> 0), a fraction outside [0, 1), negative steps, or a warmup
      that is not shorter than the run.
  """
  c = _fields(opt_config)
  total_steps = int(total_steps)
  steps, fraction = int(c["warmup_steps"]), float(c["warmup_fraction"])
  if steps > 0 and fraction > 0:
    raise ValueError(f"set optimizer.warmup_steps ({steps}) or optimizer.warmup_fraction "
                     f"({fraction}), not both")
  if not 0 <= fraction < 1:
    raise ValueError(f"optimizer.warmup_fraction must be in [0, 1), got {fraction}")
  warmup = int(round(fraction * total_steps)) if fraction > 0 else steps
  if not 0 <= warmup < total_steps:
    raise ValueError(f"optimizer.warmup_steps must be in [0, {total_steps}) (the number of "
                     f"training steps), got {warmup}")
  return warmup


def make_schedule(opt_config: Mapping[str, Any] | Any, total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step, laid out on the run's TOTAL step count.

  Warmup goes linearly from 0 to `learning_rate` over `warmup_length(...)` steps
  (`warmup_steps`, or `warmup_fraction` of `total_steps`). After it:
    constant: `learning_rate`.
    cosine: cosine decay from `learning_rate` to `end_learning_rate_factor * learning_rate` at
      `total_steps`; the whole schedule equals `optax.warmup_cosine_decay_schedule(0,
      learning_rate, warmup, total_steps, end_learning_rate_factor * learning_rate)`. With
      `warmup_fraction` it is a one-cycle-style ramp up and cosine down whose shape does not
      depend on the run's length (the option for short CPU runs).
    step: `learning_rate * decay_factor ** i` from the i-th boundary on; the boundaries are
      `round(f * total_steps)` for the fractions f in `decay_boundaries`, i.e. fractions of the
      whole run, warmup included (ImageNet-style 0.1x drops). The peak rate holds from the end
      of warmup to the first boundary: with `warmup_fraction=0.05` and boundaries (1/3, 2/3),
      steps 8-49 of a 150-step run, 45-299 of a 900-step one.
      (Before 2026-11-28 the boundaries were fractions of the post-warmup steps, so a fixed
      warmup of 50 steps left a 150-step run 33 steps at the peak; issue 21.)

  Args:
    opt_config: the `optimizer` config section (ConfigDict or mapping).
    total_steps: the number of training steps (>= 1).

  Returns:
    An optax schedule `step -> float32 learning rate`.

  Raises:
    ValueError: unknown schedule, bad warmup (see `warmup_length`), negative learning rate,
      boundaries that are not increasing fractions in (0, 1) or fall inside the warmup.
  """
  c = _fields(opt_config)
  total_steps = int(total_steps)
  lr = float(c["learning_rate"])
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  if lr < 0:
    raise ValueError(f"optimizer.learning_rate must be >= 0, got {lr}")
  if c["schedule"] not in SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {c['schedule']!r}; valid: {list(SCHEDULES)}")
  warmup = warmup_length(c, total_steps)
  if c["schedule"] == "constant":
    main = optax.constant_schedule(lr)
  elif c["schedule"] == "cosine":
    # What optax.warmup_cosine_decay_schedule builds, but with alpha given directly (its
    # end_value / peak_value may differ from the factor in the last bit) and no zero-length
    # warmup piece: the same floats as before the schedules moved to total steps.
    main = optax.cosine_decay_schedule(lr, total_steps - warmup,
                                       alpha=float(c["end_learning_rate_factor"]))
  else:
    fractions = tuple(float(f) for f in c["decay_boundaries"])
    if any(not 0 < f < 1 for f in fractions) or list(fractions) != sorted(fractions):
      raise ValueError("optimizer.decay_boundaries must be increasing fractions in (0, 1), got "
                       f"{fractions}")
    steps = [int(round(f * total_steps)) for f in fractions]
    if steps and steps[0] <= warmup:
      raise ValueError(f"optimizer.decay_boundaries {fractions} of {total_steps} steps put a "
                       f"drop at step {steps[0]}, inside the {warmup}-step warmup; use a "
                       "shorter warmup (e.g. warmup_fraction) or later boundaries")
    boundaries = {}
    for step in steps:  # fractions that round to the same step multiply there
      boundaries[step - warmup] = boundaries.get(step - warmup, 1.0) * float(c["decay_factor"])
    main = optax.piecewise_constant_schedule(lr, boundaries)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _decay_mask(params: Any) -> Any:
  """True for kernels (ndim > 1): weight decay skips biases and BatchNorm scales/offsets."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(opt_config: Mapping[str, Any] | Any,
                   total_steps: int) -> optax.GradientTransformation:
  """The optax optimizer named by `opt_config.name`, with clipping, weight decay and schedule.

  Chain: clip by global norm (when `grad_clip_norm` > 0) -> weight decay -> optimizer with the
  `make_schedule` learning rate. Weight decay applies to kernels only (ndim > 1):
    sgd: SGD with `momentum` (0: plain SGD) and optional `nesterov`; decay is L2
      (`weight_decay * w` added to the gradient, as in the ResNet/Inception recipes).
    adam: Adam (`b1`, `b2`, `eps`) with the same coupled L2 decay.
    adamw: AdamW with decoupled decay `weight_decay` (scaled by the learning rate, as optax does).

  Args:
    opt_config: the `optimizer` config section (ConfigDict or mapping).
    total_steps: the number of training steps (sets the schedule's length).

  Returns:
    An optax GradientTransformation.

  Raises:
    ValueError: unknown optimizer name or field, bad schedule, negative weight decay/momentum.
  """
  c = _fields(opt_config)
  if c["name"] not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {c['name']!r}; valid: {list(OPTIMIZERS)}")
  weight_decay = float(c["weight_decay"])
  if weight_decay < 0:
    raise ValueError(f"optimizer.weight_decay must be >= 0, got {weight_decay}")
  momentum = float(c["momentum"])
  if not 0 <= momentum < 1:
    raise ValueError(f"optimizer.momentum must be in [0, 1), got {momentum}")
  schedule = make_schedule(c, total_steps)
  parts = []
  if float(c["grad_clip_norm"]) > 0:
    parts.append(optax.clip_by_global_norm(float(c["grad_clip_norm"])))
  if c["name"] == "adamw":
    parts.append(optax.adamw(schedule, b1=float(c["b1"]), b2=float(c["b2"]), eps=float(c["eps"]),
                             weight_decay=weight_decay, mask=_decay_mask))
    return optax.chain(*parts)
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(weight_decay, mask=_decay_mask))
  if c["name"] == "sgd":
    parts.append(optax.sgd(schedule, momentum=momentum or None, nesterov=bool(c["nesterov"])))
  else:
    parts.append(optax.adam(schedule, b1=float(c["b1"]), b2=float(c["b2"]), eps=float(c["eps"])))
  return optax.chain(*parts)


def freeze_for(tx: optax.GradientTransformation, frozen: Any, steps: int
               ) -> optax.GradientTransformation:
  """`tx`, except that parameters where `frozen` is True get zero updates for `steps` steps.

  For fine-tuning from imported weights: the pretrained trunk (`frozen`, a pytree of bools
  shaped like the params, e.g. `models.pretrained.merge_pretrained`'s mask) stays put while the
  fresh head and DFS module settle, then trains with the same optimizer. Built with
  `optax.multi_transform`, so each part keeps its own optimizer state.
  """
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f"freeze steps must be an int >= 0, got {steps!r}")
  gate = optax.scale_by_schedule(lambda count: jnp.where(count < steps, 0.0, 1.0))
  labels = jax.tree.map(lambda f: "trunk" if f else "rest", frozen)
  return optax.multi_transform({"rest": tx, "trunk": optax.chain(tx, gate)}, labels)
