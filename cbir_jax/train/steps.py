"""Pure train/eval steps (softmax cross-entropy) and their jit-compiled data-parallel versions."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
import optax

from cbir_jax.train.state import TrainState


def cross_entropy_loss(logits: jax.Array, labels: jax.Array,
                       label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with label smoothing.

  Targets are `(1 - label_smoothing) * one_hot(label) + label_smoothing / num_classes`.

  Args:
    logits: f32[b, num_classes].
    labels: int32[b] in [0, num_classes).
    label_smoothing: in [0, 1).

  Returns:
    f32[b] losses.
  """
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, label_smoothing: float = 0.0,
               aux_loss_weight: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on the batch mean loss; BatchNorm statistics are updated from the batch.

  Under `jit` with the batch sharded over a "data" mesh axis the means (loss, BatchNorm batch
  statistics) are over the global batch, so gradients are averaged over devices and BatchNorm
  is synchronised without explicit collectives (tested against one device).

  Args:
    state: the TrainState.
    batch: {"image": f32[b, h, w, c], "label": int32[b]}.
    label_smoothing: see `cross_entropy_loss`.
    aux_loss_weight: > 0 adds this weight times the loss of the model's "aux" endpoint
      (InceptionV3 with `aux_logits=True`).

  Returns:
    (new state, {"loss": f32[], "accuracy": f32[]}) where loss is the total training loss and
    accuracy the top-1 accuracy of the main logits, both batch means.
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    variables = {"params": params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    kwargs = {"features": ("aux",)} if aux_loss_weight else {}
    out, updates = state.apply_fn(variables, batch["image"], train=True,
                                  rngs={"dropout": dropout_rng}, mutable=["batch_stats"],
                                  **kwargs)
    logits = out[0] if aux_loss_weight else out
    loss = cross_entropy_loss(logits, batch["label"], label_smoothing).mean()
    if aux_loss_weight:
      loss = loss + aux_loss_weight * cross_entropy_loss(out[1]["aux"], batch["label"],
                                                         label_smoothing).mean()
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads,
                                    batch_stats=updates.get("batch_stats", state.batch_stats))
  accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
  return new_state, {"loss": loss, "accuracy": accuracy}


def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Masked sums for evaluation (inference mode: BatchNorm running statistics, no dropout).

  Args:
    state: the TrainState.
    batch: {"image": f32[b, h, w, c], "label": int32[b], "mask": bool[b]} (padding rows have
      mask False).

  Returns:
    {"loss_sum": f32[], "correct": f32[], "count": f32[]} summed over the rows with mask True,
    so sums over batches give exact totals even with a padded last batch.
  """
  logits = state.apply_fn(state.variables(), batch["image"], train=False)
  mask = batch["mask"].astype(jnp.float32)
  loss = cross_entropy_loss(logits, batch["label"])
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return {"loss_sum": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask),
          "count": jnp.sum(mask)}


def jit_train_step(state_sharding: Any, batch_sharding: NamedSharding, *,
                   label_smoothing: float = 0.0, aux_loss_weight: float = 0.0,
                   donate: bool = True) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """`train_step` compiled for a mesh: state in/out with `state_sharding`, batch sharded.

  Args:
    state_sharding: a sharding (or pytree of shardings) for the TrainState, e.g. replicated.
    batch_sharding: sharding of every batch leaf (leading axis over "data").
    label_smoothing, aux_loss_weight: see `train_step` (fixed at compile time).
    donate: donate the input state's buffers (the caller must not reuse the old state).

  Returns:
    jitted `f(state, batch) -> (state, metrics)`; metrics are replicated scalars.
  """
  step = functools.partial(train_step, label_smoothing=float(label_smoothing),
                           aux_loss_weight=float(aux_loss_weight))
  replicated = NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
  return jax.jit(step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, replicated),
                 donate_argnums=(0,) if donate else ())


def jit_eval_step(state_sharding: Any,
                  batch_sharding: NamedSharding) -> Callable[..., dict[str, jax.Array]]:
  """`eval_step` compiled for a mesh (see `jit_train_step`); outputs are replicated scalars."""
  replicated = NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
  return jax.jit(eval_step, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=replicated)
