"""Launchers (absl); packaged as cbir_jax._bin so console scripts can reach them."""
