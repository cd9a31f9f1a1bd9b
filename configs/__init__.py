"""Experiment configs (ml_collections); packaged as cbir_jax._configs for console scripts."""
