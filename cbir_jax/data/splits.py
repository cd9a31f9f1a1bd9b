"""Seeded, stratified index splits shared by load_arrays and the image_folder builder."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits example positions into (train, test), class by class.

  For every class c (in ascending label order) with n_c examples, a permutation of its
  positions is drawn from `np.random.default_rng(seed)` and the first
  `round(n_c * test_fraction)` go to test (at least 1 and at most n_c - 1 when n_c >= 2; a
  class with a single example stays in train). The result depends only on
  (labels, test_fraction, seed).

  Args:
    labels: int[n] class labels.
    test_fraction: fraction of each class that goes to the test side, in (0, 1).
    seed: integer seed.

  Returns:
    (train, test): two int64 arrays of positions into `labels`, each sorted ascending;
    disjoint, and together they cover range(n).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    where = np.flatnonzero(labels == c)
    where = where[rng.permutation(where.size)]
    n_test = int(round(where.size * test_fraction))
    if where.size >= 2:
      n_test = min(max(n_test, 1), where.size - 1)
    else:
      n_test = 0
    test.append(where[:n_test])
    train.append(where[n_test:])
  return (np.sort(np.concatenate(train)).astype(np.int64),
          np.sort(np.concatenate(test)).astype(np.int64))
