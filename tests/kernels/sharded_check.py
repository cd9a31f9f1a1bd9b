"""Run by test_sharded.py in a subprocess with 8 simulated CPU devices; exits 1 on a mismatch."""

import sys

import jax
import numpy as np
from jax.sharding import Mesh

from cbir_jax.kernels import euclidean_topk, hamming_topk, pack_bits
from cbir_jax.kernels.sharded import sharded_euclidean_topk, sharded_hamming_topk


def main() -> None:
  assert len(jax.devices()) == 8, jax.devices()
  rng = np.random.default_rng(int(sys.argv[1]))
  flat = Mesh(np.array(jax.devices()), ("db",))
  grid = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
  failures = []
  # n not divisible by 8 with heavy integer ties; k larger than a shard (n=13 over 4 devices of
  # a 2-D mesh -> 4 rows per shard, the last one 1 valid row).
  for n, k, chunk, mesh, axis in ((1001, 10, 64, flat, "db"), (13, 13, None, grid, "model")):
    x = rng.integers(0, 3, size=(n, 4)).astype(np.float32)
    q = rng.integers(0, 3, size=(5, 4)).astype(np.float32)
    for method in ("auto", "jax"):  # the native FFI kernel on each device's shard, pure JAX
      want = euclidean_topk(q, x, k, chunk_size=chunk, method=method)
      got = sharded_euclidean_topk(q, x, k, mesh=mesh, axis_name=axis, chunk_size=chunk,
                                   method=method)
      for w, g in zip(want, got):
        if not np.array_equal(np.asarray(w), np.asarray(g)):
          failures.append(("euclidean", method, n, k, axis))
    codes = pack_bits(rng.random((n, 40)) < 0.1)
    qc = pack_bits(rng.random((5, 40)) < 0.1)
    for method in ("popcount", "gemm"):
      want = hamming_topk(qc, codes, k, chunk_size=chunk)
      got = sharded_hamming_topk(qc, codes, k, mesh=mesh, axis_name=axis, chunk_size=chunk,
                                 method=method)
      for w, g in zip(want, got):
        if not np.array_equal(np.asarray(w), np.asarray(g)):
          failures.append(("hamming", method, n, k, axis))
  if failures:
    print("MISMATCH", failures)
    sys.exit(1)
  print("OK")


if __name__ == "__main__":
  main()
