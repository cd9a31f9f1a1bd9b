"""Sharded search on 8 simulated CPU devices equals single-device search (run in a subprocess)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from jax.sharding import Mesh

from cbir_jax.kernels.sharded import sharded_euclidean_topk


def test_eight_devices_equal_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  root = pathlib.Path(__file__).resolve().parents[2]
  seed = str(np.random.default_rng().integers(2**31))
  proc = subprocess.run([sys.executable, "-m", "tests.kernels.sharded_check", seed], cwd=root,
                        env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, f"seed {seed}\n{proc.stdout}\n{proc.stderr[-3000:]}"
  assert proc.stdout.strip().endswith("OK")


def test_bad_axis_and_k():
  import jax  # pylint: disable=import-outside-toplevel
  mesh = Mesh(np.array(jax.devices()[:1]), ("db",))
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="'rows' is not a mesh axis"):
    sharded_euclidean_topk(x, x, 1, mesh=mesh, axis_name="rows")
  with pytest.raises(ValueError, match=r"\[1, 4\].*got k = 5"):
    sharded_euclidean_topk(x, x, 5, mesh=mesh, axis_name="db")
  d, i = sharded_euclidean_topk(x, x, 4, mesh=mesh, axis_name="db")
  np.testing.assert_array_equal(np.asarray(i), np.tile(np.arange(4), (4, 1)))
  np.testing.assert_array_equal(np.asarray(d), 0.0)


def test_gpu_lowering_streams_the_gpu_chunk(monkeypatch):
  # sharded_euclidean_topk hands both chunk lengths (euclidean.resolve_chunks, per shard) to the
  # search, and a GPU lowering of the search streams the GPU one, others the CPU one.
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import euclidean, sharded  # pylint: disable=import-outside-toplevel
  mesh = Mesh(np.array(jax.devices()[:1]), ("db",))
  seen = {}
  search = sharded._sharded_search

  def spy(*args, **kwargs):
    seen.update(kwargs)
    return search(*args, **kwargs)

  monkeypatch.setattr(sharded, "_sharded_search", spy)
  x = np.random.default_rng(0).standard_normal((70, 3)).astype(np.float32)
  sharded_euclidean_topk(x[:9], x, 4, mesh=mesh, axis_name="db")
  assert (seen["chunk"], seen["gpu_chunk"]) == euclidean.resolve_chunks(None, 70, 9,
                                                                        euclidean.WINDOW)
  q = jax.ShapeDtypeStruct((1000, 4), jnp.float32)
  db = jax.ShapeDtypeStruct((3_000_000, 4), jnp.float32)
  chunk, gpu_chunk = euclidean.resolve_chunks(None, db.shape[0], q.shape[0], euclidean.WINDOW)
  assert chunk != gpu_chunk
  traced = search.trace(q, db, metric="euclidean", method="jax", n=db.shape[0], k=5, local_k=5,
                        chunk=chunk, gpu_chunk=gpu_chunk, window=euclidean.WINDOW, mesh=mesh,
                        axis_name="db")
  for platform, want, other in (("cuda", gpu_chunk, chunk), ("cpu", chunk, gpu_chunk)):
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    assert f"tensor<{want}x4xf32>" in text and f"tensor<{other}x4xf32>" not in text
