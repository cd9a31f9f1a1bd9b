"""Information gain rate (seed paper 002, formulas 1-5): rank feature dimensions, keep the top b.

For a feature dimension A, the database D is partitioned by A's discretised value into D_1..D_m:

  H(D)     = -sum_c |C_c|/|D| log2(|C_c|/|D|)                 class entropy            (1)
  H(D|A)   =  sum_i |D_i|/|D| H(D_i)                          conditional entropy
  g(D, A)  =  H(D) - H(D|A)                                   information gain         (2)
  H_A(D)   = -sum_i |D_i|/|D| log2(|D_i|/|D|)                  split information        (5)
  gR(D, A) =  g(D, A) / H_A(D)                                information gain rate    (3, 4)

The paper leaves the discretisation of continuous features open. The default partition is two
bins split at the hashing threshold, value > theta_j (theta_j = database mean of dimension j, the
`MeanThresholdHasher(threshold="dimension")` threshold), so the rate measures exactly the
information the dimension's hash bit carries. `bins=m > 2` uses m equal-frequency bins (edges at
the database quantiles k/m; a value goes to the bin counting the edges strictly below it; tied
values may leave bins empty, which contribute nothing). A dimension with H_A(D) = 0 (a single
non-empty bin, e.g. a constant one) has rate 0. Everything is computed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Largest number of (example, dimension) cells held at once while counting (~64 MB of int64).
_MAX_CELLS = 1 << 23


def check_finite(x: np.ndarray, name: str) -> None:
  """Raises ValueError naming the first (row, column) of `x` (2-D) that is NaN or infinite."""
  bad = ~np.isfinite(x)
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise ValueError(f"{name} must be finite; found {x[row, col]} at row {row}, column {col}")


def _check_features(features: Any, name: str = "features") -> np.ndarray:
  x = np.asarray(features)
  if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got {x.shape}")
  if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
    raise TypeError(f"{name} must be real numbers, got dtype {x.dtype}")
  check_finite(x, name)
  return x


def _check_labels(labels: Any, n: int) -> np.ndarray:
  y = np.asarray(labels)
  if y.shape != (n,):
    raise ValueError(f"labels must have shape ({n},), got {y.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    raise TypeError(f"labels must be integers, got dtype {y.dtype}")
  return np.unique(y, return_inverse=True)[1].reshape(n)


def mean_thresholds(features: Any) -> np.ndarray:
  """Database mean of every dimension: f64[d] (the default IGR split and hashing threshold)."""
  x = _check_features(features)
  return np.mean(x, axis=0, dtype=np.float64)


def _bin_edges(x: np.ndarray, thresholds: Any, bins: int) -> np.ndarray:
  """Bin edges (m - 1, d) float64 for the partition described in the module docstring."""
  d = x.shape[1]
  if thresholds is not None:
    if bins != 2:
      raise ValueError(f"thresholds only apply with bins=2, got bins={bins}")
    t = np.asarray(thresholds, np.float64)
    if t.shape != (d,):
      raise ValueError(f"thresholds must have shape ({d},), got {t.shape}")
    if not np.all(np.isfinite(t)):
      raise ValueError("thresholds must be finite")
    return t[None]
  if bins == 2:
    return np.mean(x, axis=0, dtype=np.float64)[None]
  q = np.arange(1, bins, dtype=np.float64) / bins
  return np.quantile(x.astype(np.float64), q, axis=0)


def _entropy_terms(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
  """-sum counts/n log2(counts/totals) over the last axis; 0 log 0 = 0."""
  n = counts.sum(axis=-1, keepdims=True) if totals is None else totals
  with np.errstate(divide="ignore", invalid="ignore"):
    p = np.where(counts > 0, counts / n, 1.0)
  return -np.sum(np.where(counts > 0, counts * np.log2(p), 0.0), axis=-1)


def information_gain_rate(features: Any, labels: Any, *, thresholds: Any = None,
                          bins: int = 2, chunk_dims: int | None = None) -> np.ndarray:
  """Information gain rate of every feature dimension for the class labels (see module doc).

  Args:
    features: (n, d) real array (the database side only), finite.
    labels: (n,) integer class labels (any values; only equality matters).
    thresholds: optional f64[d] split points for bins=2 (value > threshold -> upper bin);
      default the database mean of each dimension.
    bins: number of bins m >= 2: 2 = split at `thresholds`, m > 2 = equal-frequency bins.
    chunk_dims: dimensions counted at once; default keeps ~8M (example, dim) cells in memory.

  Returns:
    f64[d] rates in [0, 1] (0 where the split information is 0). Memory: O(n * chunk_dims).

  Raises:
    ValueError: bad shapes, non-finite values (names the row/column), bins < 2.
    TypeError: non-numeric features or non-integer labels.
  """
  x = _check_features(features)
  n, d = x.shape
  y = _check_labels(labels, n)
  if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
    raise ValueError(f"bins must be an int >= 2, got {bins!r}")
  bins = int(bins)
  edges = _bin_edges(x, thresholds, bins)
  num_classes = int(y.max()) + 1
  class_counts = np.bincount(y, minlength=num_classes).astype(np.float64)
  h_d = _entropy_terms(class_counts, None) / n
  if chunk_dims is None:
    chunk_dims = max(1, _MAX_CELLS // n)
  if chunk_dims < 1:
    raise ValueError(f"chunk_dims must be >= 1, got {chunk_dims}")
  rates = np.zeros(d, np.float64)
  for start in range(0, d, chunk_dims):
    stop = min(d, start + chunk_dims)
    block = x[:, start:stop].astype(np.float64)
    width = stop - start
    # Bin of each value = number of edges strictly below it, in [0, bins).
    part = np.zeros(block.shape, np.int64)
    for edge in edges[:, start:stop]:
      part += block > edge
    flat = (np.arange(width, dtype=np.int64) * bins + part) * num_classes + y[:, None]
    joint = np.bincount(flat.ravel(), minlength=width * bins * num_classes).astype(np.float64)
    joint = joint.reshape(width, bins, num_classes)
    sizes = joint.sum(axis=2)                                      # |D_i|: (width, bins)
    h_cond = _entropy_terms(joint, sizes[..., None]).sum(axis=1) / n
    h_split = _entropy_terms(sizes, None) / n
    gain = np.maximum(h_d - h_cond, 0.0)  # >= 0 exactly; clip float rounding (~1e-16)
    with np.errstate(divide="ignore", invalid="ignore"):
      rates[start:stop] = np.where(h_split > 0, gain / np.where(h_split > 0, h_split, 1.0), 0.0)
  return rates


def order_by_rate(rates: Any) -> np.ndarray:
  """int64[d]: dimensions by descending rate, ties to the lower dimension index (stable)."""
  r = np.asarray(rates, np.float64)
  if r.ndim != 1 or np.isnan(r).any():
    raise ValueError(f"rates must be a 1-D array without NaN, got shape {r.shape}")
  return np.argsort(-r, kind="stable").astype(np.int64)


def redundancy_aware_order(features: Any, rates: Any, *, penalty: float = 1.0,
                           thresholds: Any = None) -> np.ndarray:
  """Dimensions in greedy relevance-minus-redundancy order (an mRMR-style IGR variant).

  Plain IGR ranks each dimension alone, so it can keep many near-duplicates of one strong
  dimension. This order starts from the best rate and then always takes the dimension j that
  maximises `rates[j] / max(rates) - penalty * mean_{s in chosen} |corr(bit_j, bit_s)|`, where
  bit_j = features[:, j] > threshold_j (the database mean, as the hash uses) and corr is Pearson's
  over the database. `penalty = 0` gives the plain IGR order. Ties go to the lower index.

  Args:
    features: (n, d) database features, finite.
    rates: f64[d] information gain rates of the same features.
    penalty: weight of the redundancy term, >= 0.
    thresholds: optional f64[d] binarisation points (default the database mean).

  Returns:
    int64[d], a permutation of range(d).
  """
  x = _check_features(features)
  n, d = x.shape
  r = np.asarray(rates, np.float64)
  if r.shape != (d,) or not np.isfinite(r).all():
    raise ValueError(f"rates must be f64[{d}] and finite, got shape {r.shape}")
  if isinstance(penalty, bool) or not np.isfinite(penalty) or penalty < 0:
    raise ValueError(f"penalty must be a finite number >= 0, got {penalty!r}")
  theta = mean_thresholds(x) if thresholds is None else np.asarray(thresholds, np.float64)
  bits = (x > theta).astype(np.float32)
  centered = bits - bits.mean(axis=0)
  scale = np.sqrt((centered * centered).sum(axis=0))
  with np.errstate(divide="ignore", invalid="ignore"):
    corr = np.abs((centered.T @ centered) / np.outer(scale, scale)).astype(np.float64)
  corr[~np.isfinite(corr)] = 0.0  # A constant bit is correlated with nothing.
  relevance = r / r.max() if r.max() > 0 else np.zeros_like(r)
  chosen = np.zeros(d, bool)
  redundancy_sum = np.zeros(d, np.float64)
  order = np.empty(d, np.int64)
  for step in range(d):
    score = relevance - (penalty * redundancy_sum / step if step else 0.0)
    score[chosen] = -np.inf
    j = int(np.argmax(score))  # First maximum: ties to the lower index.
    order[step], chosen[j] = j, True
    redundancy_sum += corr[:, j]
  return order


def rank_features(features: Any, labels: Any, **kwargs: Any) -> np.ndarray:
  """Dimensions ordered by descending information gain rate (ties: lower index first).

  Args:
    features: (n, d) database features; labels: (n,) int; kwargs: see `information_gain_rate`.

  Returns:
    int64[d], a permutation of range(d).
  """
  return order_by_rate(information_gain_rate(features, labels, **kwargs))


def _check_order(order: Any, d: int) -> np.ndarray:
  o = np.asarray(order)
  if o.ndim != 1 or not np.issubdtype(o.dtype, np.integer):
    raise ValueError(f"order must be a 1-D integer array, got {o.dtype}{list(o.shape)}")
  if o.size and (o.min() < 0 or o.max() >= d):
    raise ValueError(f"order indexes dimensions outside [0, {d}): min {o.min()}, max {o.max()}")
  if np.unique(o).size != o.size:
    raise ValueError("order must not repeat a dimension")
  return o.astype(np.int64)


def _check_b(b: Any, limit: int) -> int:
  if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= limit:
    raise ValueError(f"b must be an int in [1, {limit}], got {b!r}")
  return int(b)


def select(features: Any, order: Any, b: int) -> np.ndarray:
  """Keeps the first b dimensions of `order`: features[:, order[:b]].

  Args:
    features: (n, d) array; order: int[d'] distinct dimensions (d' <= d); b in [1, d'].

  Returns:
    (n, b) array, same dtype as `features`, column i = dimension order[i].
  """
  x = np.asarray(features)
  if x.ndim != 2:
    raise ValueError(f"features must have shape (n, d), got {x.shape}")
  o = _check_order(order, x.shape[1])
  b = _check_b(b, o.size)
  return x[:, o[:b]]


class FeatureSelector:
  """IGR top-b selection fitted on the database and applied unchanged to queries.

  `fit(db_features, db_labels)` computes the rates (see `information_gain_rate`); `transform(x)`
  returns x[:, order[:b]]. `state()` / `from_state()` round-trip through plain arrays (for an
  index's metadata or an .npz file).
  """

  def __init__(self, b: int, *, bins: int = 2):
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
      raise ValueError(f"b must be an int >= 1, got {b!r}")
    self.b = int(b)
    self.bins = int(bins)
    self.rates: np.ndarray | None = None
    self.order: np.ndarray | None = None

  def fit(self, features: Any, labels: Any) -> "FeatureSelector":
    """Fits on database features (n, d) and labels (n,); b must be <= d. Returns self."""
    x = _check_features(features)
    _check_b(self.b, x.shape[1])
    self.rates = information_gain_rate(x, labels, bins=self.bins)
    self.order = order_by_rate(self.rates)
    return self

  def _fitted(self) -> np.ndarray:
    if self.order is None:
      raise ValueError("FeatureSelector is not fitted; call fit() or from_state() first")
    return self.order

  @property
  def indices(self) -> np.ndarray:
    """int64[b]: the kept dimensions, best first."""
    return self._fitted()[:self.b]

  def transform(self, features: Any) -> np.ndarray:
    """(n, d) -> (n, b), same dtype; d must equal the fitted dimension."""
    order = self._fitted()
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != order.size:
      raise ValueError(f"features must have shape (n, {order.size}), got {x.shape}")
    return select(x, order, self.b)

  def state(self) -> dict[str, np.ndarray]:
    """{"b": int64[], "bins": int64[], "rates": f64[d], "order": int64[d]}."""
    order = self._fitted()
    return {"b": np.asarray(self.b, np.int64), "bins": np.asarray(self.bins, np.int64),
            "rates": np.asarray(self.rates, np.float64), "order": order}

  @classmethod
  def from_state(cls, state: dict[str, Any]) -> "FeatureSelector":
    """Rebuilds a fitted selector from `state()`'s arrays."""
    missing = {"b", "bins", "rates", "order"} - set(state)
    if missing:
      raise ValueError(f"selector state is missing {sorted(missing)}")
    selector = cls(int(state["b"]), bins=int(state["bins"]))
    order = np.asarray(state["order"])
    selector.order = _check_order(order, order.size)
    _check_b(selector.b, order.size)
    selector.rates = np.asarray(state["rates"], np.float64)
    return selector
