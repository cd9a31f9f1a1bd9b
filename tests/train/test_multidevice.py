"""Data parallelism: 8 simulated CPU devices, and 2 processes x 2 devices, == 1 device.

Runs in subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=N so the rest of the
suite keeps its single device.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
  import json
  import flax.linen as nn
  import jax
  import numpy as np
  from cbir_jax.train import mesh as mesh_lib, optim, state as state_lib, steps

  class TinyBN(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
      x = nn.Dropout(0.25, deterministic=not train)(x.mean((1, 2)))
      return nn.Dense(3)(x)

  assert jax.device_count() == 8, jax.devices()
  rs = np.random.RandomState(0)
  B = 16
  batch = {"image": rs.randn(B, 6, 6, 2).astype(np.float32),
           "label": (np.arange(B) % 3).astype(np.int32)}
  tx = optim.make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                             "weight_decay": 1e-3}, 10)

  def run(devices):
    mesh = mesh_lib.make_mesh(devices)
    rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    state = jax.jit(lambda r: state_lib.create_train_state(TinyBN(), tx, r, (1, 6, 6, 2)),
                    out_shardings=rep)(jax.random.PRNGKey(0))
    gbatch = mesh_lib.global_batch(batch, data)
    shards = len(gbatch["image"].addressable_shards)
    state, metrics = steps.jit_train_step(rep, data)(state, gbatch)
    state, metrics = steps.jit_train_step(rep, data)(state, gbatch)  # 2 steps: momentum too
    kernel = state.params["Conv_0"]["kernel"]
    info = {"batch_shards": shards, "param_devices": len(kernel.sharding.device_set),
            "param_replicated": kernel.sharding.is_fully_replicated}
    return jax.device_get((state.params, state.batch_stats, metrics)), info

  (p8, bs8, m8), info8 = run(jax.devices())
  (p1, bs1, m1), info1 = run(jax.devices()[:1])
  diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in
                          zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(p1))
  print(json.dumps({"params": diff(p8, p1), "batch_stats": diff(bs8, bs1),
                    "loss": abs(float(m8["loss"]) - float(m1["loss"])), "scale": scale,
                    "mean_moved": float(np.max(np.abs(bs1["BatchNorm_0"]["mean"]))),
                    "info8": info8, "info1": info1}))
""")


def test_eight_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  assert r["info8"] == {"batch_shards": 8, "param_devices": 8, "param_replicated": True}
  assert r["info1"] == {"batch_shards": 1, "param_devices": 1, "param_replicated": True}
  assert r["mean_moved"] > 1e-3  # BatchNorm statistics really were updated from the batch.
  # Same global-batch means (loss, gradients, BatchNorm statistics) up to float reordering.
  assert r["loss"] < 1e-5, r
  assert r["params"] < 1e-5 * max(1.0, r["scale"]), r
  assert r["batch_stats"] < 1e-5, r


_MULTIPROCESS_SCRIPT = textwrap.dedent("""
  import json
  import flax.linen as nn
  import jax
  import numpy as np
  from cbir_jax.train import mesh as mesh_lib, optim, state as state_lib, steps

  assert mesh_lib.initialize_distributed("auto")  # From JAX_COORDINATOR_ADDRESS & co.
  assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()

  class TinyBN(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
      return nn.Dense(3)(x.mean((1, 2)))

  rs = np.random.RandomState(0)
  B = 16
  batch = {"image": rs.randn(B, 6, 6, 2).astype(np.float32),
           "label": (np.arange(B) % 3).astype(np.int32)}
  tx = optim.make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, 10)

  def run(devices, local_batch):
    mesh = mesh_lib.make_mesh(devices)
    rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    state = jax.jit(lambda r: state_lib.create_train_state(TinyBN(), tx, r, (1, 6, 6, 2)),
                    out_shardings=rep)(jax.random.PRNGKey(0))
    step = steps.jit_train_step(rep, data)
    gbatch = mesh_lib.global_batch(local_batch, data)
    for _ in range(2):
      state, _ = step(state, gbatch)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                        (state.params, state.batch_stats)), gbatch["image"].shape

  pid = jax.process_index()
  mine = {k: v[pid * B // 2:(pid + 1) * B // 2] for k, v in batch.items()}
  got, global_shape = run(jax.devices(), mine)          # 4 devices over 2 processes
  want, _ = run(jax.local_devices()[:1], batch)          # this process alone, 1 device
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(got),
                                                          jax.tree.leaves(want)))
  print(json.dumps({"diff": diff, "global_shape": list(global_shape), "pid": pid}))
""")


def test_two_processes_match_one_device():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen([sys.executable, "-c", _MULTIPROCESS_SCRIPT], cwd=REPO,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outputs = []
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=300)
      assert proc.returncode == 0, err[-3000:]
      outputs.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  assert sorted(o["pid"] for o in outputs) == [0, 1]
  for o in outputs:
    assert o["global_shape"] == [16, 6, 6, 2]  # two 8-row process slices, one global batch
    assert o["diff"] < 1e-5, o
