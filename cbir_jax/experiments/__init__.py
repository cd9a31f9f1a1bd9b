"""Paper experiments end to end: train -> extract -> fuse / IGR-hash -> index -> evaluate.

`bin/reproduce.py` loads an experiment config (configs/experiments/<name>.py) and calls
`run_experiment` (or `run_seeds`); nothing in the library imports this package. Every stage is
skipped when its outputs exist in the workdir (training resumes from its newest orbax
checkpoint). Modules: `stages` (the cached stages and reports), `corel` (seed 000), `schemes`
(seed 002), `recipes` (training recipes compared on validation), `seeds` (several seeds, mean ±
std), `pretrain` (networks trained first on another data set, to start from).
"""

from cbir_jax.experiments import corel, pretrain, recipes, schemes
from cbir_jax.experiments.corel import run_corel
from cbir_jax.experiments.recipes import run_recipes
from cbir_jax.experiments.schemes import run_schemes
from cbir_jax.experiments.seeds import aggregate_seeds, run_seeds, with_seed

__all__ = ["aggregate_seeds", "run_corel", "run_experiment", "run_recipes", "run_schemes",
           "run_seeds", "seeds_report", "with_seed"]

# Each experiment kind: its runner (one seed) and its report over seeds (markdown lines and
# extras: the choice over seeds, figures), both keyed by `config.kind`.
KINDS = {
    "corel_fusion": (run_corel, corel.seeds_report),
    "recipes": (run_recipes, recipes.seeds_report),
    "schemes": (run_schemes, schemes.seeds_report),
}


def _kind(config):
  if config.kind not in KINDS:
    raise ValueError(f"unknown experiment kind {config.kind!r}; valid: {sorted(KINDS)}")
  return KINDS[config.kind]


def run_experiment(config, workdir: str) -> dict:
  """Runs the stages of `config.kind`; returns {"markdown", "files"}."""
  return _kind(config)[0](pretrain.resolve(config, workdir), workdir)


def seeds_report(config, aggregate: dict, workdir: str,
                 payloads: dict[int, dict]) -> tuple[list[str], dict]:
  """`config.kind`'s tables over seeds (`aggregate`, from the seeds' `payloads`): (markdown
  lines, {"choice"?, "files"?})."""
  return _kind(config)[1](config, aggregate, workdir, payloads)
