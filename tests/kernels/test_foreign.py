"""Every public kernel inside a user's jit / vmap / shard_map equals the references (issue 16).

The matrix lives in foreign_check.py: search kernels x (jit, vmap, shard_map over database rows
or over queries with check_vma on and off, plain jit on a row-sharded database), distance
matrices inside shard_map, the sharded search under jit; on this process's device(s) here and on
8 simulated CPU devices in a subprocess.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from tests.kernels import foreign_check


def test_foreign_programs_on_this_process_devices(rng):
  seed = int(rng.integers(2**31))
  failures = foreign_check.run(seed)
  assert not failures, f"seed {seed}:\n" + "\n".join(failures)


def test_issue_repro_shard_map_over_database_rows(rng):
  # The program of issue 16, verbatim: it raised a TypeError at trace time (loop carries
  # without the database's varying mesh axis).
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.sharding import Mesh, PartitionSpec as P  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import euclidean_topk  # pylint: disable=import-outside-toplevel
  from tests.kernels import reference  # pylint: disable=import-outside-toplevel
  mesh = Mesh(np.array(jax.devices()), ("db",))
  xq = rng.standard_normal((6, 8)).astype(np.float32)
  xb = rng.standard_normal((16 * len(jax.devices()), 8)).astype(np.float32)

  def local(q, b):
    d, i = euclidean_topk(q, b, 5)
    return d[None], (i + jax.lax.axis_index("db") * b.shape[0])[None]

  d, i = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("db")),
                               out_specs=(P("db"), P("db"))))(xq, xb)
  _, want = reference.rank(reference.l2(xq, xb), 5)
  _, got = foreign_check.merge_shards(np.asarray(d), np.asarray(i), 5)
  np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_foreign_programs_on_eight_devices(rng):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  root = pathlib.Path(__file__).resolve().parents[2]
  seed = str(rng.integers(2**31))
  proc = subprocess.run([sys.executable, "-m", "tests.kernels.foreign_check", seed], cwd=root,
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, f"seed {seed}\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
  assert "0 failures" in proc.stdout
