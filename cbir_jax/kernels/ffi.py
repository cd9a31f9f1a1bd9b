"""Native CPU kernels through the XLA FFI (optional C++ extension `cbir_jax.kernels._native`).

`l2_topk_keys` is an exact squared-L2 top-k that consumes each block of products while it is
still in registers (csrc/l2_topk.h) instead of writing (q, chunk) products to memory and reading
them back, which is what the pure-JAX kernel must do; on this project's 2-core CPU it runs near
the machine's FMA peak (docs/BENCHMARKS.md). It is an XLA custom call, so it is callable inside
`jit`, `vmap` (sequentially per batch element) and `shard_map`, on CPU only: `euclidean.py`
selects it per platform with `lax.platform_dependent` and keeps the pure-JAX path for GPU/TPU,
for installs without the extension (no compiler at install time), and when CBIR_JAX_NATIVE=0.
"""

import functools
import os

import jax
import jax.custom_batching
import jax.experimental.custom_partitioning
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from cbir_jax.kernels import topk

try:
  from cbir_jax.kernels import _native
except ImportError:  # built without the extension (setup.py): pure-JAX kernels only
  _native = None

L2_TOPK_TARGET = "cbir_jax_l2_topk"
HAMMING_TOPK_TARGET = "cbir_jax_hamming_topk"
L2_HALF_TOPK_TARGET = "cbir_jax_l2_half_topk"
# Queries up to this count take the native L2 kernel's GEMV path (csrc/l2_gemv.h), whose
# arithmetic the half-precision kernel shares; it is also the half-precision kernel's limit.
GEMV_MAX_Q = 16
# Each worker thread keeps (q, k) heaps, so k is bounded; larger k uses the pure-JAX kernel.
L2_MAX_K = 4096
HAMMING_MAX_K = 4096

_registered = False


def available() -> bool:
  """Whether the native kernels are built and enabled (CBIR_JAX_NATIVE=0 disables them)."""
  return _native is not None and os.environ.get("CBIR_JAX_NATIVE", "1") != "0"


def simd() -> str | None:
  """Instruction set the extension was compiled for ('avx512', 'avx2', ...), None if absent."""
  return _native.simd() if _native is not None else None


def _register() -> None:
  global _registered
  if not _registered:
    for name, capsule in _native.targets().items():
      jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    _registered = True


def _topk_call(target, queries, database, n_valid, offset, k):
  """The bare custom call `target`: int32 keys and indices (q, k)."""
  _register()
  q = queries.shape[0]
  out = (jax.ShapeDtypeStruct((q, k), jnp.int32), jax.ShapeDtypeStruct((q, k), jnp.int32))
  args = (queries, database, n_valid, offset)
  call = jax.ffi.ffi_call(target, out, vmap_method="sequential")
  # A custom call's results vary along no mesh axis unless told: type them from the operands,
  # as any other op's would be, so it composes with a user's shard_map (check_vma=True).
  return topk.cast_varying(call(*args), topk.varying_axes(args))


def _row_axes(spec) -> tuple[str, ...]:
  """Mesh axes of a PartitionSpec's first dimension."""
  first = spec[0] if len(spec) else None
  return () if first is None else ((first,) if isinstance(first, str) else tuple(first))


def partitioned(call):
  """`call(queries, database, n_valid, offset, k)`, a native top-k, as an op the SPMD
  partitioner splits along the database rows instead of gathering the database.

  Under a plain `jit` with a database sharded by rows over mesh axes A (and anything else
  replicated), each device runs `call` on its own block of rows (n_valid and offset shifted by
  the block's first row, local k = min(k, rows per block)), and the (devices, q, k) lists are
  all-gathered and merged (`topk.merge_sorted_parts`): the result equals the call on the whole
  database. Queries sharded by rows over other axes stay sharded; a sharded dimension axis is
  gathered. Inside a fully manual `shard_map` or on one device it is the bare call. Under `vmap`
  the batch runs sequentially through the bare call (no batching rule for custom partitioning).
  """
  cp = jax.experimental.custom_partitioning.custom_partitioning(call, static_argnums=(4,))

  def partition(k, mesh, arg_shapes, result_shape):
    del result_shape
    axes = _row_axes(arg_shapes[1].sharding.spec)
    q_axes = tuple(a for a in _row_axes(arg_shapes[0].sharding.spec) if a not in axes)
    rows = NamedSharding(mesh, P(q_axes or None, None))
    scalar = NamedSharding(mesh, P())
    arg_shardings = (rows, NamedSharding(mesh, P(axes or None, None)), scalar, scalar)

    def lower(queries, database, n_valid, offset):
      if not axes:
        return call(queries, database, n_valid, offset, k)
      shard_n = database.shape[0]
      start = jax.lax.axis_index(axes) * shard_n
      keys, idx = call(queries, database, n_valid - start, offset + start, min(k, shard_n))
      return topk.merge_sorted_parts(jax.lax.all_gather(keys, axes),
                                     jax.lax.all_gather(idx, axes), k)

    return mesh, lower, (rows, rows), arg_shardings

  def infer(k, mesh, arg_shapes, result_shape):
    del k, result_shape
    q_axes = tuple(a for a in _row_axes(arg_shapes[0].sharding.spec)
                   if a not in _row_axes(arg_shapes[1].sharding.spec))
    return (NamedSharding(mesh, P(q_axes or None, None)),) * 2

  # Shardy: q rows pass through to the results; the database rows (n) and dims (d) appear in
  # no result, so the partitioner consults `partition` for them.
  cp.def_partition(partition=partition, infer_sharding_from_operands=infer,
                   sharding_rule="q d, n d, , -> q k, q k")

  @functools.lru_cache(maxsize=None)
  def for_k(k):
    @jax.custom_batching.custom_vmap
    def fn(queries, database, n_valid, offset):
      return cp(queries, database, n_valid, offset, k)

    @fn.def_vmap
    def rule(axis_size, in_batched, *args):
      del axis_size
      axes = tuple(0 if b else None for b in in_batched)
      return jax.vmap(lambda *a: call(*a, k), in_axes=axes)(*args), (True, True)

    return fn

  def run(queries, database, n_valid, offset, k):
    return for_k(k)(queries, database, n_valid, offset)

  return run


_l2_partitioned = partitioned(functools.partial(_topk_call, L2_TOPK_TARGET))
_hamming_partitioned = partitioned(functools.partial(_topk_call, HAMMING_TOPK_TARGET))


def l2_topk_keys(queries: jax.Array, database: jax.Array, k: int, n_valid=None,
                 offset=0) -> tuple[jax.Array, jax.Array]:
  """Native CPU twin of `euclidean.euclidean_topk_keys` (same keys, indices and tie rule).

  Args:
    queries: (q, d) float32. database: (n, d) float32. k: 1 <= k <= n (static).
    n_valid: rows at or beyond this count are excluded (traced allowed); default n.
    offset: added to the returned indices (traced allowed).

  Returns:
    (keys (q, k) int32 ascending, see topk.float_keys; indices (q, k) int32). Slots with no
    valid row hold topk.PAD_KEY and index `offset`. A database sharded by rows under a plain
    `jit` is searched where it lies (`partitioned`).
  """
  if not available():
    raise RuntimeError("the native kernels are not built or are disabled (CBIR_JAX_NATIVE=0)")
  n = database.shape[0]
  n_valid = n if n_valid is None else n_valid
  return _l2_partitioned(queries.astype(jnp.float32), database.astype(jnp.float32),
                         jnp.asarray(n_valid, jnp.int32).reshape(()),
                         jnp.asarray(offset, jnp.int32).reshape(()), k)


def hamming_topk_keys(query_codes: jax.Array, database_codes: jax.Array, k: int, n_valid=None,
                      offset=0) -> tuple[jax.Array, jax.Array]:
  """Native CPU twin of `hamming.hamming_topk_keys` (csrc/hamming_topk.h; same distances,
  indices and tie rule).

  Args:
    query_codes: (q, w) uint32. database_codes: (n, w) uint32. k: 1 <= k <= n (static).
    n_valid / offset: as in `l2_topk_keys`.

  Returns:
    (distances (q, k) int32 ascending; indices (q, k) int32). Slots with no valid row hold
    topk.PAD_KEY and index `offset`. Memory: O(threads * q * k) beyond the inputs.
  """
  if not available():
    raise RuntimeError("the native kernels are not built or are disabled (CBIR_JAX_NATIVE=0)")
  n = database_codes.shape[0]
  n_valid = n if n_valid is None else n_valid
  return _hamming_partitioned(query_codes, database_codes,
                              jnp.asarray(n_valid, jnp.int32).reshape(()),
                              jnp.asarray(offset, jnp.int32).reshape(()), k)


def l2_half_topk_keys(queries: jax.Array, half: jax.Array, full: jax.Array, err: jax.Array,
                      norm: jax.Array, sq: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Native exact L2 top-k from a bfloat16 copy (csrc/l2_half.h; see kernels/half.py).

  Args:
    queries: (q, d) float32, 1 <= q <= GEMV_MAX_Q. half: (n, d) uint16 bfloat16 bits of `full`
      (n, d) float32. err: (n,) float32 >= |x - x~|. norm: (n,) float32 >= |x~|. sq: (n,) float32
      |x~|^2 rounded to nearest. k: 1 <= k <= n.

  Returns:
    (keys (q, k) int32 as l2_topk_keys's GEMV path gives them, indices (q, k) int32, rows
    re-scored in float32 (1,) int32). Sequential under vmap; no custom partitioning.
  """
  if not available():
    raise RuntimeError("the native kernels are not built or are disabled (CBIR_JAX_NATIVE=0)")
  _register()
  q = queries.shape[0]
  out = (jax.ShapeDtypeStruct((q, k), jnp.int32), jax.ShapeDtypeStruct((q, k), jnp.int32),
         jax.ShapeDtypeStruct((1,), jnp.int32))
  args = (queries.astype(jnp.float32), half, full, err, norm, sq)
  call = jax.ffi.ffi_call(L2_HALF_TOPK_TARGET, out, vmap_method="sequential")
  return topk.cast_varying(call(*args), topk.varying_axes(args))


__all__ = ["l2_half_topk_keys", "GEMV_MAX_Q", "available", "simd", "l2_topk_keys", "hamming_topk_keys", "L2_MAX_K",
           "HAMMING_MAX_K", "L2_TOPK_TARGET", "HAMMING_TOPK_TARGET"]
