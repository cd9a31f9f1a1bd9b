"""Mean-threshold hashing (seed paper 002, Algorithm 1): b real features -> b bits, packed uint32.

Algorithm 1 compares each of the b (IGR-selected) feature values with "the mean value of the
specified dimension" theta. That phrase is ambiguous, so both readings are offered:

- `threshold="dimension"` (default): theta_j = mean of dimension j over the database, computed in
  `fit` (float64), stored, and reused unchanged for queries.
- `threshold="vector"`: theta_i = mean of vector i's own b values; nothing is fitted beyond b.

Polarity: bit = 1 when value > theta. The paper's formula (7) writes the opposite (1 when
theta > value) while its text says values above the mean give 1; Hamming distances (hence
rankings) are identical under either polarity because complementing every bit of both codes keeps
every XOR, and a value equal to theta only moves between the two sides consistently. Bits are
packed with `cbir_jax.kernels.bits.pack_bits`: bit j in word j // 32 at position j % 32, padding 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cbir_jax.features.igr import check_finite
from cbir_jax.kernels import bits as bits_lib

MODES = ("dimension", "vector")


class MeanThresholdHasher:
  """Binarises (n, b) features at a mean threshold and packs them into (n, ceil(b/32)) uint32.

  Usage: `codes_db = MeanThresholdHasher().fit(db).transform(db)`, then `transform(queries)`.
  `state()` / `from_state()` round-trip through plain NumPy arrays (for index metadata).
  """

  def __init__(self, threshold: str = "dimension"):
    if threshold not in MODES:
      raise ValueError(f"threshold must be one of {list(MODES)}, got {threshold!r}")
    self.threshold = threshold
    self.nbits: int | None = None
    self.theta: np.ndarray | None = None

  @staticmethod
  def _check(x: Any, name: str, nbits: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
      raise ValueError(f"{name} must have shape (n, b) with b >= 1, got {x.shape}")
    if nbits is not None and x.shape[1] != nbits:
      raise ValueError(f"{name} must have {nbits} columns (the fitted b), got {x.shape[1]}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
      raise TypeError(f"{name} must be real numbers, got dtype {x.dtype}")
    check_finite(x, name)
    return x

  def fit(self, database: Any) -> "MeanThresholdHasher":
    """Fits on database features (n, b) real, finite, n >= 1. Returns self.

    "dimension" stores theta = f64[b] column means; "vector" only records b.
    """
    x = self._check(database, "database")
    if x.shape[0] < 1:
      raise ValueError("database must have at least one row")
    self.nbits = x.shape[1]
    self.theta = np.mean(x, axis=0, dtype=np.float64) if self.threshold == "dimension" else None
    return self

  def _fitted(self) -> int:
    if self.nbits is None:
      raise ValueError("MeanThresholdHasher is not fitted; call fit() or from_state() first")
    return self.nbits

  def bits(self, features: Any) -> np.ndarray:
    """(n, b) real, finite -> (n, b) bool: value > theta (per column or per row, see module doc).

    Raises:
      ValueError: wrong b, or a NaN/inf value (the message names its row and column).
    """
    x = self._check(features, "features", self._fitted()).astype(np.float64)
    if self.threshold == "dimension":
      return x > self.theta[None, :]
    return x > np.mean(x, axis=1, keepdims=True)

  def transform(self, features: Any) -> np.ndarray:
    """(n, b) real, finite -> (n, ceil(b / 32)) uint32 packed codes (padding bits 0)."""
    return np.asarray(bits_lib.pack_bits(self.bits(features)))

  def state(self) -> dict[str, np.ndarray]:
    """{"threshold": str array ("dimension"|"vector"), "nbits": int64[], "theta": f64[b]}.

    `theta` is empty (shape (0,)) in "vector" mode.
    """
    nbits = self._fitted()
    theta = self.theta if self.theta is not None else np.zeros((0,), np.float64)
    return {"threshold": np.asarray(self.threshold), "nbits": np.asarray(nbits, np.int64),
            "theta": np.asarray(theta, np.float64)}

  @classmethod
  def from_state(cls, state: dict[str, Any]) -> "MeanThresholdHasher":
    """Rebuilds a fitted hasher from `state()`'s arrays."""
    missing = {"threshold", "nbits", "theta"} - set(state)
    if missing:
      raise ValueError(f"hasher state is missing {sorted(missing)}")
    hasher = cls(str(np.asarray(state["threshold"])))
    nbits = int(state["nbits"])
    theta = np.asarray(state["theta"], np.float64)
    expected = (nbits,) if hasher.threshold == "dimension" else (0,)
    if nbits < 1 or theta.shape != expected:
      raise ValueError(f"hasher state: theta shape {theta.shape} does not fit nbits={nbits} in "
                       f"mode {hasher.threshold!r} (expected {expected})")
    if not np.all(np.isfinite(theta)):
      raise ValueError("hasher state: theta must be finite")
    hasher.nbits = nbits
    hasher.theta = theta if hasher.threshold == "dimension" else None
    return hasher
