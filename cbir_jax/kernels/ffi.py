"""Native CPU kernels through the XLA FFI (optional C++ extension `cbir_jax.kernels._native`).

`l2_topk_keys` is an exact squared-L2 top-k that consumes each block of products while it is
still in registers (csrc/l2_topk.h) instead of writing (q, chunk) products to memory and reading
them back, which is what the pure-JAX kernel must do; on this project's 2-core CPU it runs near
the machine's FMA peak (docs/BENCHMARKS.md). It is an XLA custom call, so it is callable inside
`jit`, `vmap` (sequentially per batch element) and `shard_map`, on CPU only: `euclidean.py`
selects it per platform with `lax.platform_dependent` and keeps the pure-JAX path for GPU/TPU,
for installs without the extension (no compiler at install time), and when CBIR_JAX_NATIVE=0.
"""

import os

import jax
import jax.numpy as jnp

try:
  from cbir_jax.kernels import _native
except ImportError:  # built without the extension (setup.py): pure-JAX kernels only
  _native = None

L2_TOPK_TARGET = "cbir_jax_l2_topk"
# Each worker thread keeps (q, k) heaps, so k is bounded; larger k uses the pure-JAX kernel.
L2_MAX_K = 4096

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


def l2_topk_keys(queries: jax.Array, database: jax.Array, k: int, n_valid=None,
                 offset=0) -> tuple[jax.Array, jax.Array]:
  """Native CPU twin of `euclidean.euclidean_topk_keys` (same keys, indices and tie rule).

  Args:
    queries: (q, d) float32. database: (n, d) float32. k: 1 <= k <= n (static).
    n_valid: rows at or beyond this count are excluded (traced allowed); default n.
    offset: added to the returned indices (traced allowed).

  Returns:
    (keys (q, k) int32 ascending, see topk.float_keys; indices (q, k) int32). Slots with no
    valid row hold topk.PAD_KEY and index `offset`.
  """
  if not available():
    raise RuntimeError("the native kernels are not built or are disabled (CBIR_JAX_NATIVE=0)")
  _register()
  q, n = queries.shape[0], database.shape[0]
  n_valid = n if n_valid is None else n_valid
  out = (jax.ShapeDtypeStruct((q, k), jnp.int32), jax.ShapeDtypeStruct((q, k), jnp.int32))
  call = jax.ffi.ffi_call(L2_TOPK_TARGET, out, vmap_method="sequential")
  return call(queries.astype(jnp.float32), database.astype(jnp.float32),
              jnp.asarray(n_valid, jnp.int32).reshape(()),
              jnp.asarray(offset, jnp.int32).reshape(()))


__all__ = ["available", "simd", "l2_topk_keys", "L2_MAX_K", "L2_TOPK_TARGET"]
