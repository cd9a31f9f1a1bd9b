"""Data parallelism: one step on 8 (simulated CPU) devices == one step on 1 device, BN included.

Runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 so the rest of the
suite keeps its single device.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
