"""Paper experiments end to end: train -> extract -> fuse / IGR-hash -> index -> evaluate.

`bin/reproduce.py` loads an experiment config (configs/experiments/<name>.py) and calls
`run_experiment` (or `run_seeds`); nothing in the library imports this package. Every stage is
skipped when its outputs exist in the workdir (training resumes from its newest orbax
checkpoint). Modules: `stages` (the cached stages and reports), `corel` (seed 000), `schemes`
(seed 002), `recipes` (training recipes compared on validation), `seeds` (several seeds, mean ±
std), `pretrain` (networks trained first on another data set, to start from).
"""

from cbir_jax.experiments import pretrain
from cbir_jax.experiments.corel import run_corel
from cbir_jax.experiments.recipes import run_recipes
from cbir_jax.experiments.schemes import run_schemes
from cbir_jax.experiments.seeds import aggregate_seeds, run_seeds, with_seed

__all__ = ["aggregate_seeds", "run_corel", "run_experiment", "run_recipes", "run_schemes",
           "run_seeds", "with_seed"]


def run_experiment(config, workdir: str) -> dict:
  """Runs the stages of `config.kind`; returns {"markdown", "files"}."""
  runners = {"corel_fusion": run_corel, "recipes": run_recipes, "schemes": run_schemes}
  if config.kind not in runners:
    raise ValueError(f"unknown experiment kind {config.kind!r}; valid: {sorted(runners)}")
  return runners[config.kind](pretrain.resolve(config, workdir), workdir)
