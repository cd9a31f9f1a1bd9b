"""cbir_jax.eval."""
