"""cbir_jax.data."""
