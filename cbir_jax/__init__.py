"""cbir_jax: a JAX/Flax engine for content-based image retrieval."""

__version__ = "0.1.0"
