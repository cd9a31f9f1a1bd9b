"""Exact squared-L2 distances and streaming top-k search (jit-able, FAISS result order)."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from cbir_jax.kernels import ffi
from cbir_jax.kernels import topk as topk_lib

# Default (q, chunk) float32 product block: 64 MiB. Fewer, longer chunks halve the per-chunk
# selection passes; measured 10-20 % less CPU time than 16 MiB at N = 200k and 1M (d = 128).
BLOCK_BYTES = 64 * 2**20
# The same on a GPU (CUDA/ROCm): 1 GiB, FAISS's GPU default temporary memory is of that order.
# Per-chunk launch and selection overheads dominate small blocks there (H100, N = 1M, Q = 1000:
# 56,994 queries/s at 64 MiB, 84,895 at 256 MiB, 96,793 at 1 GiB with 2.2 GiB peak; the whole
# (Q, N) matrix at once 104,428 with 8 GiB; docs/BENCHMARKS.md).
GPU_BLOCK_BYTES = 2**30
# Default window of the two-stage selection: 8 rows, whose minima _StridedScorer's layout
# reduces fastest (N = 1M, Q = 1000: 1.77 s against 1.89 s for 32 rows in contiguous layout).
WINDOW = 8
# Windows up to this length use _StridedScorer (longer ones measured slower in that layout).
STRIDED_MAX_WINDOW = 8
# "auto": the fused native kernel (ffi.py) on CPU where it is built, else pure JAX; "jax": the
# pure-JAX streaming kernel everywhere.
METHODS = ("auto", "jax")


def check_method(method: str) -> str:
  return topk_lib.check_method(method, METHODS)


def check_float_pair(a: Any, b: Any, a_name: str, b_name: str) -> None:
  for x, name in ((a, a_name), (b, b_name)):
    if getattr(x, "ndim", None) != 2:
      raise ValueError(f"{name} must be 2-D (rows, dim), got shape {getattr(x, 'shape', None)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(f"{name} must be a float array, got dtype {x.dtype}")
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"{a_name} have dim {a.shape[1]} but {b_name} have dim {b.shape[1]}")


def _as_f32(x: Any) -> jax.Array:
  return jnp.asarray(x).astype(jnp.float32)


@jax.jit
def _distances(a: jax.Array, b: jax.Array) -> jax.Array:
  a, b = _as_f32(a), _as_f32(b)
  aa = jnp.sum(a * a, axis=1)
  bb = jnp.sum(b * b, axis=1)
  d = aa[:, None] + bb[None, :] - 2.0 * jnp.dot(a, b.T, precision="highest")
  return jnp.where(d < 0, jnp.float32(0), d)


def euclidean_distances(a: Any, b: Any) -> jax.Array:
  """Full squared-L2 distance matrix, for small inputs (memory O(m * n)).

  Args:
    a: (m, d) float. b: (n, d) float. Computed in float32 as |a|^2 + |b|^2 - 2 a.b, negatives
      from rounding clipped to 0.

  Returns:
    (m, n) float32 jax array.
  """
  check_float_pair(a, b, "a", "b")
  return _distances(a, b)


class _Scorer:
  """Squared L2 as (|q|^2 + |x|^2) + (-2 q).x, the same two additions in both stages.

  Scaling q by -2 is exact, and adds only (no multiply for XLA to contract into an FMA) keep the
  candidate rescoring bitwise equal to the window pass.
  """

  def __init__(self, queries: jax.Array, database: jax.Array):
    self.database = database
    self.qq = jnp.sum(queries * queries, axis=1)
    self.q_m2 = queries * -2.0

  def prepare(self, start, chunk):
    x = jax.lax.dynamic_slice_in_dim(self.database, start, chunk, axis=0)
    return jnp.sum(x * x, axis=1), jnp.dot(self.q_m2, x.T, precision="highest")

  def keys(self, aux):
    xx, dots = aux
    return topk_lib.float_keys((self.qq[:, None] + xx[None, :]) + dots)

  def keys_at(self, aux, pos):
    xx, dots = aux
    pos = jnp.minimum(pos, dots.shape[1] - 1)
    return topk_lib.float_keys((self.qq[:, None] + xx[pos]) +
                               jnp.take_along_axis(dots, pos, axis=1))


class _StridedScorer(_Scorer):
  """_Scorer with the chunk's rows multiplied in window-strided order.

  Product column w * G + g holds row g * window + w (G = chunk / window windows), so the minimum
  of each window of consecutive rows is a reduction across `window` columns G apart, which XLA
  vectorises along the windows, instead of a reduction inside each run of `window` columns
  (measured 260 -> 185 ms for that pass at N = 1M, Q = 1000; about 5 % of the search).
  """

  def __init__(self, queries: jax.Array, database: jax.Array, window: int):
    super().__init__(queries, database)
    self.window = window

  def _strided(self, v):
    """Rows (chunk, ...) in window-strided order."""
    v = v.reshape((v.shape[0] // self.window, self.window) + v.shape[1:])
    return jnp.swapaxes(v, 0, 1).reshape((-1,) + v.shape[2:])

  def prepare(self, start, chunk):
    x = jax.lax.dynamic_slice_in_dim(self.database, start, chunk, axis=0)
    return jnp.sum(x * x, axis=1), jnp.dot(self.q_m2, self._strided(x).T, precision="highest")

  def keys(self, aux):
    """Keys in the strided column order of the products."""
    xx, dots = aux
    return topk_lib.float_keys((self.qq[:, None] + self._strided(xx)[None, :]) + dots)

  def window_minima(self, aux, valid, window):
    keys = jnp.where(self._strided(valid)[None, :], self.keys(aux), topk_lib.PAD_KEY)
    return keys.reshape(keys.shape[0], window, -1).min(axis=1)

  def keys_at(self, aux, pos):
    xx, dots = aux
    pos = jnp.minimum(pos, dots.shape[1] - 1)
    col = (pos % self.window) * (dots.shape[1] // self.window) + pos // self.window
    return topk_lib.float_keys((self.qq[:, None] + xx[pos]) +
                               jnp.take_along_axis(dots, col, axis=1))


def euclidean_topk_keys(queries: jax.Array, database: jax.Array, k: int, chunk: int, window: int,
                        n_valid: Any = None, offset: Any = 0, method: str = "auto",
                        gpu_chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Traceable core without input checks: int32 keys (see topk.float_keys) and indices.

  With method "auto", on CPU, when the native extension is built (`ffi.available()`) and
  k <= ffi.L2_MAX_K, this is the fused native kernel (`ffi.l2_topk_keys`; `chunk` and `window`
  do not apply); elsewhere the pure-JAX streaming kernel, in chunks of `chunk` rows, or of
  `gpu_chunk` rows when lowered for a GPU (default: `chunk`). `lax.platform_dependent` picks
  one when lowering, so a function jitted here and lowered for GPU or TPU never contains the
  CPU custom call.
  """
  queries, database = _as_f32(queries), _as_f32(database)
  n = database.shape[0]
  n_valid = n if n_valid is None else n_valid

  def pure_with(chunk):
    def pure(queries, database, n_valid, offset):
      if topk_lib.is_windowed(chunk, window, k) and window <= STRIDED_MAX_WINDOW:
        scorer = _StridedScorer(queries, database, window)
      else:
        scorer = _Scorer(queries, database)
      return topk_lib.stream_topk(scorer, num_queries=queries.shape[0], n=n, k=k, chunk=chunk,
                                  window=window, n_valid=n_valid, offset=offset)
    return pure

  args = (queries, database, jnp.asarray(n_valid, jnp.int32), jnp.asarray(offset, jnp.int32))
  branches = {"default": pure_with(chunk)}
  if gpu_chunk is not None and gpu_chunk != chunk:
    branches["cuda"] = branches["rocm"] = pure_with(gpu_chunk)
  if method != "jax" and ffi.available() and k <= ffi.L2_MAX_K:
    def native(queries, database, n_valid, offset):
      return ffi.l2_topk_keys(queries, database, k, n_valid, offset)
    branches["cpu"] = native
  if len(branches) == 1:
    return branches["default"](*args)
  return jax.lax.platform_dependent(*args, **branches)


def resolve_chunks(chunk_size: int | None, n: int, num_queries: int,
                   window: int, k: int | None = None) -> tuple[int, int]:
  """(chunk, gpu_chunk) for `euclidean_topk_keys`: `chunk_size` for both, or by default the rows
  of a BLOCK_BYTES and of a GPU_BLOCK_BYTES (q, chunk) float32 block (topk.resolve_chunk; the
  whole database when k >= n / 2)."""
  return tuple(topk_lib.resolve_chunk(chunk_size, n, num_queries, window, block_bytes=block,
                                      k=k)
               for block in (BLOCK_BYTES, GPU_BLOCK_BYTES))


@functools.partial(jax.jit, static_argnames=("k", "chunk", "window", "method", "gpu_chunk"))
def _euclidean_topk(queries, database, k, chunk, window, method, gpu_chunk):
  keys, idx = euclidean_topk_keys(queries, database, k, chunk, window, method=method,
                                  gpu_chunk=gpu_chunk)
  return topk_lib.keys_to_float(keys), idx


def euclidean_topk(queries: Any, database: Any, k: int, *, chunk_size: int | None = None,
                   window: int = WINDOW, method: str = "auto") -> tuple[jax.Array, jax.Array]:
  """Exact k nearest database rows of each query by squared L2 distance.

  Pure and jit-able: call it inside your own `jit`/`vmap` (`k`, `chunk_size`, `window`,
  `method` are static; shape checks run at trace time).

  Two implementations with one contract: on CPU, the fused native kernel (an XLA FFI custom
  call, `cbir_jax.kernels.ffi`; products are consumed in registers, memory O(threads * q * k)
  plus a 192 KiB tile per thread, `chunk_size` and `window` do not apply); elsewhere, or with
  `method="jax"`, or when the extension is not built, or k > ffi.L2_MAX_K, the pure-JAX
  streaming kernel below. Distances may differ in the last bits between the two (q.x is summed
  in another order); each is exact for its own float32 distances, with the same tie rule.

  Args:
    queries: (q, d) float (computed in float32).
    database: (n, d) float, n >= 1.
    k: results per query, 1 <= k <= n, else ValueError naming k and n.
    chunk_size: database rows scored per step (rounded down to a multiple of `window`);
      default: as many as fit a 64 MiB (q, chunk) float32 block (BLOCK_BYTES), 1 GiB when
      lowered for a GPU (GPU_BLOCK_BYTES), rounded down to a multiple of window *
      topk.GROUP**2. Memory beyond the inputs is O(q * chunk_size).
    window: window length of the exact two-stage selection (1 disables it).
    method: "auto" (native on CPU where built, else pure JAX) or "jax" (pure JAX everywhere).

  Returns:
    (distances (q, k) float32 ascending squared L2, indices (q, k) int32), FAISS order.
    Distances are |q|^2 + |x|^2 - 2 q.x in float32 with negatives clipped to 0. Equal distances
    rank the lower database index first. +inf ranks after every finite distance and NaN after
    +inf (last), returned as NaN; a NaN or inf input component yields NaN (0 * inf in q.x).
  """
  check_float_pair(queries, database, "queries", "database")
  method = check_method(method)
  n = database.shape[0]
  k = topk_lib.check_k(k, n)
  chunk, gpu_chunk = resolve_chunks(chunk_size, n, queries.shape[0], window, k)
  return _euclidean_topk(queries, database, k, chunk, int(window), method, gpu_chunk)

