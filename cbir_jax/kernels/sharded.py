"""Top-k search over a database sharded along one axis of a device mesh (exact, merged)."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cbir_jax.kernels import euclidean, hamming
from cbir_jax.kernels import topk as topk_lib


def _check_mesh(mesh: Mesh, axis_name: str) -> int:
  if not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  if axis_name not in mesh.shape:
    raise ValueError(f"axis_name {axis_name!r} is not a mesh axis; axes are {tuple(mesh.shape)}")
  return mesh.shape[axis_name]


def _shards(n: int, k: int, parts: int) -> tuple[int, int]:
  """(rows per shard, local k): shards of ceil(n / parts) rows, the tail padded."""
  shard_n = -(-n // parts)
  return shard_n, min(k, shard_n)


def _shard_database(database: Any, shard_n: int, parts: int, mesh: Mesh,
                    axis_name: str) -> jax.Array:
  database = jnp.asarray(database)
  pad = shard_n * parts - database.shape[0]
  if pad:
    database = jnp.pad(database, ((0, pad), (0, 0)))
  return jax.device_put(database, NamedSharding(mesh, P(axis_name)))


@functools.partial(jax.jit, static_argnames=("metric", "method", "n", "k", "local_k", "chunk",
                                             "gpu_chunk", "window", "mesh", "axis_name"))
def _sharded_search(queries, database, *, metric, method, n, k, local_k, chunk, window, mesh,
                    axis_name, gpu_chunk=None):
  shard_n = database.shape[0] // mesh.shape[axis_name]
  if metric == "euclidean":
    core = functools.partial(euclidean.euclidean_topk_keys, gpu_chunk=gpu_chunk)
  else:
    core = hamming.hamming_topk_keys

  def local(q, db):
    offset = jax.lax.axis_index(axis_name) * shard_n
    keys, idx = core(q, db, local_k, chunk, window, n_valid=n - offset, offset=offset,
                     method=method)
    all_keys = jax.lax.all_gather(keys, axis_name)  # (parts, q, local_k), shard order
    all_idx = jax.lax.all_gather(idx, axis_name)
    return topk_lib.merge_sorted_parts(all_keys, all_idx, k)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis_name)), out_specs=(P(), P()),
                       check_vma=False)(queries, database)


def sharded_euclidean_topk(queries: Any, database: Any, k: int, *, mesh: Mesh, axis_name: str,
                           chunk_size: int | None = None,
                           window: int = euclidean.WINDOW,
                           method: str = "auto") -> tuple[jax.Array, jax.Array]:
  """`euclidean_topk` with the database split in row blocks over mesh axis `axis_name`.

  Each device streams its block (ceil(n / devices) rows; the last padded and masked), keeps a
  local top-k with global indices, and the per-device lists are all-gathered and merged. The
  result equals `euclidean_topk` on one device (same tie rule: lower index first).

  Args:
    queries: (q, d) float, replicated. database: (n, d) float, placed row-sharded on the mesh.
    k: 1 <= k <= n. mesh / axis_name: the device mesh and the axis the database is split over.
    chunk_size, window, method: as in `euclidean_topk`, per device.

  Returns:
    (distances (q, k) float32 ascending, indices (q, k) int32 global rows), replicated.
  """
  euclidean.check_float_pair(queries, database, "queries", "database")
  method = euclidean.check_method(method)
  parts = _check_mesh(mesh, axis_name)
  n = database.shape[0]
  k = topk_lib.check_k(k, n)
  shard_n, local_k = _shards(n, k, parts)
  chunk, gpu_chunk = euclidean.resolve_chunks(chunk_size, shard_n, queries.shape[0], window,
                                              local_k)
  db = _shard_database(jnp.asarray(database, jnp.float32), shard_n, parts, mesh, axis_name)
  keys, idx = _sharded_search(jnp.asarray(queries, jnp.float32), db,
                              metric="euclidean", method=method, n=n, k=k, local_k=local_k,
                              chunk=chunk, gpu_chunk=gpu_chunk, window=int(window), mesh=mesh,
                              axis_name=axis_name)
  return topk_lib.keys_to_float(keys), idx


def sharded_hamming_topk(query_codes: Any, database_codes: Any, k: int, *, mesh: Mesh,
                         axis_name: str, chunk_size: int | None = None,
                         window: int = topk_lib.DEFAULT_WINDOW,
                         method: str = hamming.DEFAULT_METHOD) -> tuple[jax.Array, jax.Array]:
  """`hamming_topk` with the database codes split in row blocks over mesh axis `axis_name`.

  Args:
    query_codes: (q, w) uint32, replicated. database_codes: (n, w) uint32, row-sharded.
    k: 1 <= k <= n. mesh / axis_name / chunk_size / window / method: as above.

  Returns:
    (distances (q, k) int32 ascending, indices (q, k) int32 global rows), replicated; equal to
    `hamming_topk` on one device.
  """
  hamming.check_code_pair(query_codes, database_codes, "query_codes", "database_codes")
  method = hamming.check_method(method)
  parts = _check_mesh(mesh, axis_name)
  n = database_codes.shape[0]
  k = topk_lib.check_k(k, n)
  shard_n, local_k = _shards(n, k, parts)
  chunk = topk_lib.resolve_chunk(chunk_size, shard_n, query_codes.shape[0], window,
                                 1 if method == "gemm" else window, k=local_k)
  db = _shard_database(database_codes, shard_n, parts, mesh, axis_name)
  return _sharded_search(jnp.asarray(query_codes), db, metric="hamming", method=method, n=n,
                         k=k, local_k=local_k, chunk=chunk, window=int(window), mesh=mesh,
                         axis_name=axis_name)
