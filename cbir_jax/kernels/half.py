"""Exact float32 L2 search from a bfloat16 copy of the database (half the bytes read per query).

`HalfDatabase.build(x)` keeps the float32 rows and adds their bfloat16 rounding with, per row, an
upper bound of |x - x~| and of |x~| (float64, rounded up). `half_topk` scans the bfloat16 copy
with the native kernel (csrc/l2_half.h) and re-scores in float32 every row that a proven bound
cannot exclude, so its results are those of `euclidean_topk` on the float32 rows, bit for bit:
for q <= ffi.GEMV_MAX_Q queries on CPU with the extension built. Elsewhere it is
`euclidean_topk` on the float32 rows (same results, no saving). The bound is stated in
csrc/l2_half.h and docs/BENCHMARKS.md.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from cbir_jax.kernels import euclidean, ffi
from cbir_jax.kernels import topk as topk_lib


@dataclasses.dataclass(frozen=True)
class HalfDatabase:
  """full: (n, d) float32; half: (n, d) uint16 bfloat16 bits (round to nearest even);
  err: (n,) float32 >= |x - x~|; norm: (n,) float32 >= |x~| (Euclidean norms); sq: (n,)
  float32 |x~|^2 rounded to nearest."""
  full: Any
  half: Any
  err: Any
  norm: Any
  sq: Any

  @classmethod
  def build(cls, x: np.ndarray) -> "HalfDatabase":
    """From (n, d) finite float32 rows (NumPy); memory: 1.5x the float32 rows in all."""
    x = np.ascontiguousarray(x, np.float32)
    rounded = x.astype(ml_dtypes.bfloat16)
    back = rounded.astype(np.float64)
    # A row beyond bfloat16's range (or not finite) gets an inf / NaN bound: the kernel's
    # exclusion test then never skips it, so it is always re-scored in float32.
    with np.errstate(invalid="ignore", over="ignore"):
      err = _round_up(np.sqrt(((x.astype(np.float64) - back) ** 2).sum(axis=1)))
    sq = (back ** 2).sum(axis=1)
    norm = _round_up(np.sqrt(sq))
    return cls(full=jnp.asarray(x), half=jnp.asarray(rounded.view(np.uint16)),
               err=jnp.asarray(err), norm=jnp.asarray(norm), sq=jnp.asarray(sq.astype(np.float32)))


def _round_up(v: np.ndarray) -> np.ndarray:
  """float64 -> the smallest float32 >= each value."""
  f = v.astype(np.float32)
  low = f.astype(np.float64) < v
  f[low] = np.nextafter(f[low], np.float32(np.inf))
  return f


@functools.partial(jax.jit, static_argnames=("k",))
def _native(queries, half, full, err, norm, sq, k):
  keys, idx, rescored = ffi.l2_half_topk_keys(queries, half, full, err, norm, sq, k)
  return topk_lib.keys_to_float(keys), idx, rescored


def half_topk(queries: Any, db: HalfDatabase, k: int, *, chunk_size: int | None = None,
              return_rescored: bool = False) -> tuple[jax.Array, ...]:
  """Exact k nearest rows of `db` by squared L2, equal to `euclidean_topk(queries, db.full, k)`.

  Args:
    queries: (q, d) float32, finite. db: a HalfDatabase. k: 1 <= k <= n.
    chunk_size: passed to `euclidean_topk` where that runs instead.
    return_rescored: also return the number of rows re-scored in float32 (summed over queries;
      -1 where the float32 search ran instead).

  Returns:
    (distances (q, k) float32, indices (q, k) int32[, rescored int]), FAISS order.
  """
  queries = jnp.asarray(queries, jnp.float32)
  k = topk_lib.check_k(k, db.full.shape[0])
  if (ffi.available() and 1 <= queries.shape[0] <= ffi.GEMV_MAX_Q and k <= ffi.L2_MAX_K
      and jax.default_backend() == "cpu"):
    d, i, rescored = _native(queries, db.half, db.full, db.err, db.norm, db.sq, k)
    return (d, i, int(rescored[0])) if return_rescored else (d, i)
  d, i = euclidean.euclidean_topk(queries, db.full, k, chunk_size=chunk_size)
  return (d, i, -1) if return_rescored else (d, i)
