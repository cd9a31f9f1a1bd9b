"""Seed 002 on Caltech-256: schemes 1/2/3 for the R/I/M families. Needs the full data set.

No Caltech-256 images are in ../shared/datasets, so this experiment needs the standard
256_ObjectCategories folder (clutter class excluded by the builder; stratified, seeded 80/20
train/test split):
  python bin/reproduce.py \
      --experiment=caltech256_schemes:data=/data/256_ObjectCategories --workdir=runs/c256
CPU scale (the *_tiny variants at 64x64, 80x80 for Inception, 300 steps; 2,000-image database,
500 queries):
  python bin/reproduce.py \
      --experiment=caltech256_schemes:cpu,families=inception_v3,data=/data/256_ObjectCategories \
      --workdir=runs/c256_cpu
Smoke test: add --quick. Schemes, metrics and arguments as in cifar10_schemes.py; the paper's
Caltech-256 numbers (Tables 4-6) are in PAPER.

Arguments (comma separated): "cpu" or "quick"; "families=<a>+<b>"; "data=<folder>".
"""

import ml_collections

from cbir_jax import config_util

# Seed 002, Tables 4-6 (Caltech-256): DFS-Net accuracy (%), scheme-3 mAP (%), time (s).
PAPER = {"resnet50": (81.29, 76.74, 63.33), "inception_v3": (85.54, 83.91, 64.71),
         "mobilenet_v2": (80.07, 74.20, 64.96)}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Returns the Caltech-256 schemes experiment for `arg` (see the module docstring)."""
  c = config_util.load_sibling(__file__, "cifar10_schemes.py").schemes_config(
      "caltech256_schemes", arg, "../caltech256.py", "caltech256", "train", "test")
  c.paper = ml_collections.ConfigDict({f: PAPER[f] for f in c.families})
  if c.scale in ("cpu", "tiny"):  # The *_tiny variants (caltech256.py has no CPU-scale ones).
    c.retrieval.num_database, c.retrieval.num_queries, c.retrieval.num_validation = 2000, 500, 500
  return c
