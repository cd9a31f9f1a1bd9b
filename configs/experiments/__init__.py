"""Experiment configs for bin/reproduce.py (one get_config(arg) per experiment)."""
