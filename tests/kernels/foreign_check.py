"""The public kernels inside a user's own program ("a foreign program"): jit, vmap, shard_map.

`run(seed)` traces every public search kernel inside the programs a user would write around it
on the devices of this process (1 in-process in test_foreign.py; 8 simulated CPU devices when run
as `python -m tests.kernels.foreign_check SEED` with
XLA_FLAGS=--xla_force_host_platform_device_count=8) and returns the failures, each compared with
the float64 / bit-counting references of tests/kernels/reference.py. Integer-valued data makes
every float32 distance exact and produces many ties, so results must be equal, tie order included.
"""

import functools
import sys
import traceback

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cbir_jax.kernels import (euclidean_distances, euclidean_topk, hamming_distances,
                              hamming_topk, pack_bits, sharded_euclidean_topk,
                              sharded_hamming_topk)
from cbir_jax.kernels import ffi
from tests.kernels import reference

# name -> (metric, search(q, x, k)); small chunks so the streaming loop takes several steps.
SEARCHES = {
    "euclidean_auto": ("l2", functools.partial(euclidean_topk, method="auto", chunk_size=64)),
    "euclidean_jax": ("l2", functools.partial(euclidean_topk, method="jax", chunk_size=64)),
    "hamming_popcount": ("hamming", functools.partial(hamming_topk, method="popcount",
                                                      chunk_size=64)),
    "hamming_gemm": ("hamming", functools.partial(hamming_topk, method="gemm", chunk_size=64)),
    "hamming_auto": ("hamming", functools.partial(hamming_topk, method="auto", chunk_size=64)),
}
DISTANCES = {"l2": euclidean_distances, "hamming": hamming_distances}
CONTEXTS = ("jit", "vmap", "shard_db_vma", "shard_db_novma", "shard_q_vma", "shard_q_novma",
            "jit_sharded_db")


def make_data(metric: str, n: int, q: int, rng: np.random.Generator):
  if metric == "l2":
    return (rng.integers(-2, 3, size=(q, 5)).astype(np.float32),
            rng.integers(-2, 3, size=(n, 5)).astype(np.float32))
  return pack_bits(rng.random((q, 40)) < 0.1), pack_bits(rng.random((n, 40)) < 0.1)


def reference_topk(metric: str, q, x, k: int):
  full = reference.l2(q, x) if metric == "l2" else reference.hamming(q, x)
  return reference.rank(full, k)


def merge_shards(d: np.ndarray, i: np.ndarray, k: int):
  """(shards, q, k') per-shard lists with global indices -> the k best by (distance, index)."""
  d = np.concatenate(list(d), axis=1)
  i = np.concatenate(list(i), axis=1)
  order = np.lexsort((i, d), axis=1)[:, :k]
  return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


def in_context(context: str, search, q, x, k: int, mesh: Mesh):
  """Runs `search(q, x, k)` inside the user program named by `context`; returns NumPy (d, i)."""
  parts = mesh.shape["db"]
  if context == "jit":
    out = jax.jit(search, static_argnums=2)(q, x, k)
  elif context == "vmap":  # a batch of 2 query sets
    batch = np.stack([q, q[::-1]])
    d, i = jax.vmap(lambda qs: search(qs, x, k))(batch)
    assert np.array_equal(np.asarray(d)[1], np.asarray(d)[0][::-1])
    out = (np.asarray(d)[0], np.asarray(i)[0])
  elif context.startswith("shard_db"):  # the program: each device searches its rows
    def local(qs, xs):
      d, i = search(qs, xs, k)
      return d[None], (i + jax.lax.axis_index("db") * xs.shape[0])[None]
    fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("db")),
                               out_specs=(P("db"), P("db")),
                               check_vma=context.endswith("_vma")))
    d, i = fn(q, x)
    out = merge_shards(np.asarray(d), np.asarray(i), k)
  elif context.startswith("shard_q"):  # each device answers its queries on the whole database
    fn = jax.jit(jax.shard_map(lambda qs, xs: search(qs, xs, k), mesh=mesh,
                               in_specs=(P("db"), P()), out_specs=(P("db"), P("db")),
                               check_vma=context.endswith("_vma")))
    out = fn(q, x)
  elif context == "jit_sharded_db":  # a plain jit on a database placed row-sharded
    xs = jax.device_put(x, NamedSharding(mesh, P("db")))
    qs = jax.device_put(q, NamedSharding(mesh, P()))
    out = jax.jit(search, static_argnums=2)(qs, xs, k)
  else:
    raise ValueError(context)
  del parts
  return np.asarray(out[0]), np.asarray(out[1])


def run(seed: int) -> list[str]:
  rng = np.random.default_rng(seed)
  devices = jax.devices()
  mesh = Mesh(np.array(devices), ("db",))
  parts = len(devices)
  failures = []

  def check(label, got, want):
    for g, w, what in zip(got, want, ("distances", "indices")):
      if g.shape != w.shape or not np.array_equal(g, w):
        failures.append(f"{label}: {what} differ")
        return

  for name, (metric, search) in SEARCHES.items():
    n, nq = 64 * parts, 2 * parts  # 64 rows per shard, 2 queries per shard
    q, x = make_data(metric, n, nq, rng)
    for k in (3, 20):  # 20: past the unrolled selection (its own fori_loop)
      want = reference_topk(metric, q, x, k)
      for context in CONTEXTS if k == 3 else ("vmap", "shard_db_vma"):
        label = f"{name} k={k} {context} on {parts} device(s)"
        try:
          got = in_context(context, search, q, x, k, mesh)
        except Exception:  # pylint: disable=broad-except
          failures.append(f"{label}: raised\n{traceback.format_exc(limit=-3)}")
          continue
        check(label, got, want)

  # The full distance matrices inside a shard_map over the database rows.
  for metric, fn in DISTANCES.items():
    q, x = make_data(metric, 16 * parts, 3, rng)
    full = reference.l2(q, x) if metric == "l2" else reference.hamming(q, x)
    for vma in (True, False):
      sm = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P(), P("db")), out_specs=P(None, "db"),
                                 check_vma=vma))
      got = np.asarray(sm(q, x))
      if not np.array_equal(got, full.astype(got.dtype)):
        failures.append(f"{fn.__name__} shard_map check_vma={vma}: differ")

  # The native kernel under a plain jit keeps a row-sharded database where it lies: the only
  # all-gathers are of the (devices, q, k) int32 result lists, never of the float32 rows.
  if parts > 1 and ffi.available():
    q, x = make_data("l2", 64 * parts, 4, rng)
    xs = jax.device_put(x, NamedSharding(mesh, P("db")))
    hlo = jax.jit(euclidean_topk, static_argnums=2).lower(q, xs, 5).compile().as_text()
    gathers = [l for l in hlo.splitlines() if " all-gather(" in l]
    if not gathers or any("f32" in l.split("all-gather(")[0] for l in gathers):
      failures.append(f"euclidean_topk on a sharded database gathers rows: {gathers}")

  # The library's own sharded search, inside a user's jit.
  for metric, fn in (("l2", sharded_euclidean_topk), ("hamming", sharded_hamming_topk)):
    q, x = make_data(metric, 50 * parts + 3, 4, rng)
    want = reference_topk(metric, q, x, 7)
    got = jax.jit(lambda q, x, fn=fn: fn(q, x, 7, mesh=mesh, axis_name="db"))(q, x)
    check(f"{fn.__name__} under jit", (np.asarray(got[0]), np.asarray(got[1])),
          (want[0].astype(np.asarray(got[0]).dtype), want[1]))
  return failures


def main() -> None:
  seed = int(sys.argv[1])
  failures = run(seed)
  for f in failures:
    print("FAIL", f)
  print(f"{len(failures)} failures, seed {seed}, {len(jax.devices())} devices")
  sys.exit(1 if failures else 0)


if __name__ == "__main__":
  main()
