"""Float64 / exact NumPy references shared by the kernel and index tests."""

import numpy as np


def rank(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(q, n) distances -> k smallest per row: NaN last, ties to the lower index."""
  n = d.shape[1]
  nan = np.isnan(d)
  order = np.lexsort((np.broadcast_to(np.arange(n), d.shape), np.where(nan, 0, d), nan),
                     axis=-1)[:, :k]
  return np.take_along_axis(d, order, axis=1), order


def l2(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
  q = np.asarray(queries, np.float64)
  x = np.asarray(database, np.float64)
  return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def hamming(a_codes: np.ndarray, b_codes: np.ndarray) -> np.ndarray:
  """Exact Hamming distances by counting bits one by one (independent of popcount/GEMM)."""
  a_bits = np.unpackbits(np.ascontiguousarray(a_codes).view(np.uint8), axis=1)
  b_bits = np.unpackbits(np.ascontiguousarray(b_codes).view(np.uint8), axis=1)
  return (a_bits[:, None, :] != b_bits[None, :, :]).sum(-1).astype(np.int64)


def unit_rows(x: np.ndarray) -> np.ndarray:
  """Float64 rows scaled to unit L2 norm; a zero row stays zero."""
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def expand(queries: np.ndarray, database: np.ndarray, k: int, alpha: float,
           with_self: bool) -> np.ndarray:
  """Float64 alpha-QE (with_self=False) / DBA (queries = database, with_self=True): unit rows,
  k nearest by Euclidean distance (ties to the lower index), weights max(cos, 0) ** alpha, the
  query itself added for QE, unit result."""
  q, x = unit_rows(queries), unit_rows(database)
  _, idx = rank(l2(q, x), k)
  nb = x[idx]                                    # (q, k, d)
  s = np.einsum("qd,qkd->qk", q, nb)
  w = np.maximum(s, 0.0) ** alpha
  acc = np.einsum("qk,qkd->qd", w, nb) + (0.0 if with_self else q)
  return unit_rows(acc)
