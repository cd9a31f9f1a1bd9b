"""Training: TrainState, optax optimizers, jit steps, data-parallel mesh, orbax checkpoints, trainer."""
