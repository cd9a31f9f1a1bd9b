"""Training: TrainState, optax, jit steps, data-parallel mesh, orbax checkpoints, trainer."""
