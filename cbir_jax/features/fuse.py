"""AL fusion (seed paper 000): concatenate descriptors of several models into one vector.

The paper fuses LeNet-L F6 (84-d) and AlexNet fc8 (1000-d) features and says only that they are
"fused"; `normalize="none"` with no weights is that plain concatenation. Under Euclidean distance
a part's influence grows with its scale and dimension, so a 1000-d part can drown an 84-d one:
`normalize="l2"` scales each part of each row to unit L2 norm (every part then contributes a
squared distance in [0, 4]), and `weights` multiply each (normalised) part, which multiplies its
squared-distance contribution by weight**2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cbir_jax.features import igr

NORMALIZATIONS = ("none", "l2")


def fuse(parts: Sequence[Any], *, normalize: str = "none",
         weights: Sequence[float] | None = None, eps: float = 1e-12) -> np.ndarray:
  """Concatenates feature parts row by row, optionally L2-normalised and weighted per part.

  Args:
    parts: k >= 1 arrays, part i of shape (n, d_i), real; all with the same n.
    normalize: "none" (plain concatenation, the paper) or "l2" (each part's rows divided by their
      L2 norm; all-zero rows stay zero, norms below `eps` count as zero).
    weights: optional k finite, non-negative floats multiplying the parts (after normalisation).
    eps: norm below which a row is treated as zero.

  Returns:
    (n, sum d_i) float32; columns [sum_{j<i} d_j, sum_{j<=i} d_j) hold part i.

  Raises:
    ValueError: no parts, a part not 2-D, differing row counts (names the part), NaN or inf
      (names the part, row and column), a bad
      `normalize`, or weights of the wrong length / negative / non-finite.
  """
  if isinstance(parts, np.ndarray) or not isinstance(parts, Sequence) or len(parts) == 0:
    raise ValueError("parts must be a non-empty sequence of (n, d_i) arrays")
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}")
  arrays = [np.asarray(p) for p in parts]
  for i, a in enumerate(arrays):
    if a.ndim != 2:
      raise ValueError(f"part {i} must have shape (n, d), got {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
      raise TypeError(f"part {i} must be real numbers, got dtype {a.dtype}")
    if a.shape[0] != arrays[0].shape[0]:
      raise ValueError(f"all parts must have the same number of rows: part 0 has "
                       f"{arrays[0].shape[0]}, part {i} has {a.shape[0]}")
    igr.check_finite(a, f"part {i}")
  if weights is None:
    w = np.ones(len(arrays), np.float64)
  else:
    w = np.asarray(weights, np.float64)
    if w.shape != (len(arrays),):
      raise ValueError(f"weights must have one value per part ({len(arrays)}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
      raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
  out = []
  for a, wi in zip(arrays, w):
    a = a.astype(np.float64)
    if normalize == "l2":
      norms = np.linalg.norm(a, axis=1, keepdims=True)
      a = np.where(norms > eps, a / np.where(norms > eps, norms, 1.0), 0.0)
    out.append(a * wi)
  return np.concatenate(out, axis=1).astype(np.float32)
