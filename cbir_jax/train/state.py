"""TrainState: params, BatchNorm statistics, optimizer state, step and the run's base rng."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import optax


class TrainState(train_state.TrainState):
  """flax TrainState plus `batch_stats` (a dict, empty for models without BatchNorm) and `rng`.

  `rng` is the run's base key (uint32[2], raw `jax.random.PRNGKey` data so it checkpoints as a
  plain array); step s draws its dropout key as `fold_in(rng, s)`, so the randomness of every
  step is a function of (rng, step) and a resumed run repeats it exactly.
  """
  batch_stats: Any
  rng: jax.Array

  def variables(self) -> dict[str, Any]:
    """The model variables: {"params": ..., "batch_stats": ...} (the latter only if non-empty)."""
    out = {"params": self.params}
    if self.batch_stats:
      out["batch_stats"] = self.batch_stats
    return out


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       input_shape: tuple[int, ...]) -> TrainState:
  """Initialises `model` on zeros of `input_shape` and wraps it with `tx` into a TrainState.

  Pure and jit-able (the trainer jits it with replicated output shardings so the parameters are
  created directly on every device).

  Args:
    model: an unbound Linen module following the models contract (`init(rngs, x, train=False)`).
    tx: the optax optimizer.
    rng: uint32[2] key; split into the init key and the state's base `rng`.
    input_shape: (b, h, w, c) of one batch (b may be 1; parameters do not depend on it).

  Returns:
    TrainState at step 0.
  """
  init_rng, dropout_rng, base_rng = jax.random.split(rng, 3)
  variables = model.init({"params": init_rng, "dropout": dropout_rng},
                         jnp.zeros(input_shape, jnp.float32), train=False)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                            batch_stats=variables.get("batch_stats", {}), rng=base_rng)
  # A strongly typed int32 step (TrainState.create uses a Python 0, a weak type): a state
  # restored from a checkpoint then has exactly the same types, so nothing recompiles.
  return state.replace(step=jnp.zeros((), jnp.int32))
