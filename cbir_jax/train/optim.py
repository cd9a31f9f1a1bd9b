"""optax optimizers and learning-rate schedules built from a config's `optimizer` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
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
    "warmup_steps": 0,
    "decay_boundaries": (0.5, 0.75),   # "step": fractions of the post-warmup steps.
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


def make_schedule(opt_config: Mapping[str, Any] | Any, total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step: linear warmup, then constant / cosine / step.

  Warmup goes linearly from 0 to `learning_rate` over `warmup_steps`. After it:
    constant: `learning_rate`.
    cosine: cosine decay from `learning_rate` to `end_learning_rate_factor * learning_rate` at
      `total_steps`.
    step: `learning_rate * decay_factor ** i` after the i-th boundary; boundaries are the
      fractions `decay_boundaries` of the post-warmup steps (ImageNet-style 0.1x drops).

  Args:
    opt_config: the `optimizer` config section (ConfigDict or mapping).
    total_steps: the number of training steps (>= 1).

  Returns:
    An optax schedule `step -> float32 learning rate`.

  Raises:
    ValueError: unknown schedule, negative warmup or learning rate, warmup >= total_steps.
  """
  c = _fields(opt_config)
  total_steps = int(total_steps)
  lr = float(c["learning_rate"])
  warmup = int(c["warmup_steps"])
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  if lr < 0:
    raise ValueError(f"optimizer.learning_rate must be >= 0, got {lr}")
  if not 0 <= warmup < total_steps:
    raise ValueError(f"optimizer.warmup_steps must be in [0, {total_steps}) (the number of "
                     f"training steps), got {warmup}")
  if c["schedule"] not in SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {c['schedule']!r}; valid: {list(SCHEDULES)}")
  rest = total_steps - warmup
  if c["schedule"] == "constant":
    main = optax.constant_schedule(lr)
  elif c["schedule"] == "cosine":
    main = optax.cosine_decay_schedule(lr, rest, alpha=float(c["end_learning_rate_factor"]))
  else:
    fractions = tuple(float(f) for f in c["decay_boundaries"])
    if any(not 0 < f < 1 for f in fractions) or list(fractions) != sorted(fractions):
      raise ValueError("optimizer.decay_boundaries must be increasing fractions in (0, 1), got "
                       f"{fractions}")
    boundaries = {max(1, int(round(f * rest))): float(c["decay_factor"]) for f in fractions}
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
