"""cbir_jax.models: Linen networks with named feature endpoints, created by name."""

from cbir_jax.models.registry import endpoints, get_model, list_models

__all__ = ["endpoints", "get_model", "list_models"]
