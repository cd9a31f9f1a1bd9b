"""HashEncoder: everything between a float feature and a packed binary code, fitted once.

Seed paper 002's scheme 3 is "select b dimensions, then binarise each at a mean threshold". This
class is the one implementation of that chain in the project (the demo, the experiments, the
selection comparison and the `cbir-hash` / `cbir-index` launchers all use it):

  fit(database_features, database_labels)  ranks dimensions (information gain rate, or random,
                                            first, PCA), keeps the top b, fits the thresholds;
  project(x)                                (n, d) -> (n, b) float: the selected dimensions
                                            (or principal components);
  encode(x)                                 (n, d) -> (n, ceil(b / 32)) uint32 packed codes,
                                            bit j in word j // 32 at position j % 32;
  state() / from_state()                    one versioned JSON-compatible dict, stored inside an
                                            index's metadata (`"encoder"`), so query-by-image
                                            encodes a photo exactly as the database was.

Everything is fitted on the database only and applied unchanged to queries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cbir_jax.features import hashing, igr

FORMAT = "cbir_jax.hash_encoder"
VERSION = 1
SELECTIONS = ("igr", "igr_mrmr", "random", "first", "pca")


def _int(value: Any, name: str, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
  return int(value)


def pca_components(database: Any) -> tuple[np.ndarray, np.ndarray]:
  """(mean f64[d], components f64[d, d]): columns are principal axes by decreasing variance."""
  x = np.asarray(database, np.float64)
  mean = x.mean(axis=0)
  centered = x - mean
  values, vectors = np.linalg.eigh(centered.T @ centered)
  order = np.argsort(-values, kind="stable")
  return mean, vectors[:, order]


class HashEncoder:
  """Selects b of d feature dimensions and hashes them at a mean threshold (see module doc).

  Args:
    bits: b, the code length = number of kept dimensions, in [1, d]; -1 keeps all d.
    selection: "igr" (seed 002: descending information gain rate on the database labels),
      "igr_mrmr" (IGR with a redundancy penalty, `igr.redundancy_aware_order`; not the
      paper's, an option beside it), "random" (seeded permutation), "first" (dimensions 0..b-1) or "pca" (top-b principal
      components of the database; not a selection, for comparisons).
    igr_bins: IGR partition (2 = split at the database mean, m > 2 = equal-frequency bins).
    threshold: "dimension" (database mean per kept dimension) or "vector" (each vector's own
      mean); see `hashing.MeanThresholdHasher`.
    seed: seed of selection="random".
    redundancy: selection="igr_mrmr" only: the weight of its redundancy term (>= 0).
  """

  def __init__(self, bits: int = -1, *, selection: str = "igr", igr_bins: int = 2,
               threshold: str = "dimension", seed: int = 0, redundancy: float = 1.0):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or (
        bits != -1 and bits < 1):
      raise ValueError(f"bits must be -1 (all dimensions) or an int >= 1, got {bits!r}")
    if selection not in SELECTIONS:
      raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    if threshold not in hashing.MODES:
      raise ValueError(f"threshold must be one of {list(hashing.MODES)}, got {threshold!r}")
    self.requested_bits = int(bits)
    self.selection = selection
    self.igr_bins = _int(igr_bins, "igr_bins", 2)
    self.threshold = threshold
    self.seed = _int(seed, "seed", 0)
    if isinstance(redundancy, bool) or not np.isfinite(redundancy) or redundancy < 0:
      raise ValueError(f"redundancy must be a finite number >= 0, got {redundancy!r}")
    self.redundancy = float(redundancy)
    self.dim: int | None = None
    self.order: np.ndarray | None = None      # int64[d] (selections) or None (pca)
    self.rates: np.ndarray | None = None      # f64[d] information gain rates (igr only)
    self.pca_mean: np.ndarray | None = None   # f64[d] (pca only)
    self.pca_axes: np.ndarray | None = None   # f64[d, b] (pca only)
    self.hasher: hashing.MeanThresholdHasher | None = None

  # --------------------------------------------------------------------------------- fitting
  @property
  def bits(self) -> int:
    """The fitted code length b."""
    self._fitted()
    return self.hasher.nbits

  @property
  def words(self) -> int:
    """uint32 words per code, ceil(b / 32)."""
    return -(-self.bits // 32)

  def fit(self, features: Any, labels: Any = None, *, rates: Any = None,
          pca: tuple[np.ndarray, np.ndarray] | None = None) -> "HashEncoder":
    """Fits on database features (n, d) real, finite (and labels int[n] for selection="igr").

    A sweep over b may pass what does not depend on b, computed once on the same features:
    `rates` (f64[d], `igr.information_gain_rate` with this igr_bins) or `pca`
    (`pca_components(features)`).
    """
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
      raise ValueError(f"features must have shape (n, d) with n, d >= 1, got {x.shape}")
    d = x.shape[1]
    b = d if self.requested_bits == -1 else self.requested_bits
    if not 1 <= b <= d:
      raise ValueError(f"bits must be in [1, {d}] (the feature dimension) or -1, got "
                       f"{self.requested_bits}")
    self.dim = d
    self.rates = self.pca_mean = self.pca_axes = self.order = None
    if self.selection in ("igr", "igr_mrmr"):
      if labels is None:
        raise ValueError(f"selection={self.selection!r} needs the database labels "
                         "(fit(features, labels))")
      self.rates = (igr.information_gain_rate(x, labels, bins=self.igr_bins) if rates is None
                    else np.asarray(rates, np.float64))
      if self.rates.shape != (d,):
        raise ValueError(f"rates must have shape ({d},), got {self.rates.shape}")
      self.order = (igr.order_by_rate(self.rates) if self.selection == "igr" else
                    igr.redundancy_aware_order(x, self.rates, penalty=self.redundancy))
    elif self.selection == "random":
      self.order = np.random.default_rng(self.seed).permutation(d).astype(np.int64)
    elif self.selection == "first":
      self.order = np.arange(d, dtype=np.int64)
    else:
      igr.check_finite(x, "features")
      mean, axes = pca_components(x) if pca is None else pca
      self.pca_mean, self.pca_axes = mean, axes[:, :b]
    self.hasher = hashing.MeanThresholdHasher(self.threshold).fit(self._project(x, b))
    return self

  def _fitted(self) -> None:
    if self.hasher is None:
      raise ValueError("HashEncoder is not fitted; call fit() or from_state() first")

  def _project(self, x: np.ndarray, b: int) -> np.ndarray:
    if self.selection == "pca":
      return (np.asarray(x, np.float64) - self.pca_mean) @ self.pca_axes
    return igr.select(x, self.order, b)

  # ------------------------------------------------------------------------------- applying
  @property
  def kept_dimensions(self) -> np.ndarray:
    """int64[b]: the kept feature dimensions, best first (selections only; pca -> empty)."""
    self._fitted()
    if self.order is None:
      return np.zeros((0,), np.int64)
    return self.order[:self.bits]

  def project(self, features: Any) -> np.ndarray:
    """(n, d) -> (n, b) real: the kept dimensions (same dtype) or principal components (f64)."""
    self._fitted()
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"features must have shape (n, {self.dim}) (the fitted dimension), "
                       f"got {x.shape}")
    igr.check_finite(x, "features")  # Every dimension, kept or not: NaN input is an error.
    return self._project(x, self.bits)

  def bool_bits(self, features: Any) -> np.ndarray:
    """(n, d) -> bool[n, b]: value > threshold of each kept dimension."""
    projected = self.project(features)
    return self.hasher.bits(projected)

  def encode(self, features: Any) -> np.ndarray:
    """(n, d) real, finite -> uint32[n, ceil(b / 32)] packed codes (padding bits 0)."""
    projected = self.project(features)
    return self.hasher.transform(projected)

  # ------------------------------------------------------------------------------- state
  def state(self) -> dict[str, Any]:
    """A JSON-compatible dict (lists, ints, strings) that `from_state` restores exactly."""
    self._fitted()
    out = {"format": FORMAT, "version": VERSION, "bits": self.bits, "dim": self.dim,
           "selection": self.selection, "igr_bins": self.igr_bins,
           "threshold": self.threshold, "seed": self.seed, "redundancy": self.redundancy,
           "order": None if self.order is None else self.order.tolist(),
           "rates": None if self.rates is None else self.rates.tolist(),
           "pca_mean": None if self.pca_mean is None else self.pca_mean.tolist(),
           "pca_axes": None if self.pca_axes is None else self.pca_axes.tolist(),
           "theta": None if self.hasher.theta is None else self.hasher.theta.tolist()}
    return out

  @classmethod
  def from_state(cls, state: dict[str, Any]) -> "HashEncoder":
    """Rebuilds a fitted encoder from `state()` (also from a JSON round trip of it)."""
    if not isinstance(state, dict):
      raise ValueError(f"encoder state must be a dict, got {type(state).__name__}")
    if state.get("format") != FORMAT:
      raise ValueError(f"not a HashEncoder state: format {state.get('format')!r}, expected "
                       f"{FORMAT!r}")
    if state.get("version") != VERSION:
      raise ValueError(f"HashEncoder state version {state.get('version')!r} is not supported "
                       f"(this cbir_jax reads version {VERSION})")
    required = ("bits", "dim", "selection", "igr_bins", "threshold", "seed", "order", "theta")
    missing = [key for key in required if key not in state]
    if missing:
      raise ValueError(f"HashEncoder state is missing {missing}")
    enc = cls(int(state["bits"]), selection=state["selection"], igr_bins=int(state["igr_bins"]),
              threshold=state["threshold"], seed=int(state["seed"]),
              redundancy=float(state.get("redundancy", 1.0)))
    enc.dim = _int(state["dim"], "state dim", 1)
    b = enc.requested_bits
    if not 1 <= b <= enc.dim:
      raise ValueError(f"HashEncoder state: bits {b} is not in [1, dim = {enc.dim}]")
    if enc.selection == "pca":
      enc.pca_mean = np.asarray(state.get("pca_mean"), np.float64)
      enc.pca_axes = np.asarray(state.get("pca_axes"), np.float64)
      if enc.pca_mean.shape != (enc.dim,) or enc.pca_axes.shape != (enc.dim, b):
        raise ValueError(f"HashEncoder state: PCA shapes {enc.pca_mean.shape} / "
                         f"{enc.pca_axes.shape} do not fit dim={enc.dim}, bits={b}")
    else:
      order = np.asarray(state["order"], np.int64)
      if order.shape != (enc.dim,) or not np.array_equal(np.sort(order), np.arange(enc.dim)):
        raise ValueError(f"HashEncoder state: order is not a permutation of range({enc.dim})")
      enc.order = order
      if state.get("rates") is not None:
        enc.rates = np.asarray(state["rates"], np.float64)
    theta = state["theta"]
    enc.hasher = hashing.MeanThresholdHasher.from_state({
        "threshold": enc.threshold, "nbits": b,
        "theta": np.zeros((0,), np.float64) if theta is None else np.asarray(theta, np.float64)})
    return enc

  @classmethod
  def from_legacy(cls, feature_order: Any, hasher_state: dict[str, Any], dim: int
                  ) -> "HashEncoder":
    """An encoder from the metadata indexes written before the encoder existed
    (`feature_order` = the kept dimensions, `hasher` = MeanThresholdHasher.state())."""
    kept = np.asarray(feature_order, np.int64)
    hasher = hashing.MeanThresholdHasher.from_state(hasher_state)
    rest = np.setdiff1d(np.arange(dim, dtype=np.int64), kept)
    enc = cls(int(hasher.nbits), selection="igr", threshold=hasher.threshold)
    enc.dim, enc.order, enc.hasher = int(dim), np.concatenate([kept, rest]), hasher
    if enc.order.shape != (enc.dim,):
      raise ValueError(f"legacy feature_order {kept.tolist()} does not fit dim {dim}")
    return enc

  def __repr__(self) -> str:
    fitted = f", dim={self.dim}, bits={self.bits}" if self.hasher is not None else ""
    return (f"HashEncoder(selection={self.selection!r}, threshold={self.threshold!r}"
            f"{fitted})")
