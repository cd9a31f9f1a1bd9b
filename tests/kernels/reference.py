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
