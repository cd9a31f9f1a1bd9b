"""bin/benchmark.py models and its FLOP count (cbir_jax.models.flops): a small run end to end, bad
flags."""

import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cbir_jax.models import flops, registry

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


class _Tiny(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.Conv(4, (3, 3), padding="SAME")(x)                      # 7x9 outputs x 4, 3*3*2 each
    x = nn.Conv(6, (2, 2), strides=2, padding="VALID", feature_group_count=2)(x)  # 3x4 x 6, 2*2*2
    return nn.Dense(5)(x.reshape(x.shape[0], -1))                  # 5 outputs, 72 each


def test_layer_flops_counts_multiply_adds_of_conv_and_dense_layers():
  model, x = _Tiny(), jnp.zeros((3, 7, 9, 2))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  want = 2 * 3 * (7 * 9 * 4 * 3 * 3 * 2 + 3 * 4 * 6 * 2 * 2 * 2 + 5 * 72)
  assert flops.layer_flops(model, variables, x) == want


def test_alexnet_flops_are_the_published_figure_on_any_formulation():
  # AlexNet (torchvision's layout) at 224x224: 714 M multiply-adds, whatever models/conv.py
  # turns the convolutions into on this backend.
  model = registry.get_model("alexnet", num_classes=1000)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  assert flops.layer_flops(model, variables, x) / 2 == pytest.approx(714.2e6, rel=1e-3)


def test_quick_run_table(tmp_path):
  out = tmp_path / "table.md"
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "models",
                         "--cases=lenet_l@32x32", "--iters=1", "--batch_size=2",
                         "--num_classes=10", f"--out={out}"], cwd=REPO,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [line for line in out.read_text().splitlines() if line.startswith("| lenet_l@32x32")]
  assert len(rows) == 1
  cells = [c.strip() for c in rows[0].strip("|").split("|")]
  model = registry.get_model("lenet_l", num_classes=10)
  x = jnp.zeros((1, 32, 32, 3))
  want = flops.layer_flops(model, jax.eval_shape(model.init, jax.random.key(0), x), x) / 1e9
  assert cells[3] == f"{want:.3f}" and float(cells[5]) > 0


def test_bad_case_is_one_line():
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "models",
                         "--cases=vgg16@224x224"], cwd=REPO,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown case(s) ['vgg16@224x224']" in lines[0]
