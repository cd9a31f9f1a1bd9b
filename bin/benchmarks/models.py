"""Models benchmark: parameter counts, forward GFLOPs and forward images/s per model.

  python bin/benchmark.py models                       # every case below, batch 32, 3 timed runs
  python bin/benchmark.py models --cases=resnet50@224x224,lenet_l@32x32 --iters=5
  python bin/benchmark.py models --out=docs/BENCHMARKS.md

Weights are filled on the host (fan-in scaled normals; no `model.init` compile, which is slow on
CPU for deep nets), the eval-mode forward pass is jitted once (compile time reported), then run
`--iters` times after one warm-up call. GFLOPs are the model's own arithmetic: the
multiply-adds of its convolution and dense layers (a multiply-add counts 2) per image, counted
from the layers' shapes (`cbir_jax.models.flops`), so they are the same on every device and for
every formulation of a convolution (XLA's cost analysis is not: a GPU's cuDNN convolutions are
opaque to it, and the CPU formulations in models/conv.py do other arithmetic for the same sums).
"""

import datetime
import os
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax._bin import launch
from cbir_jax.models import flops, registry

# (case id, model name, (height, width), extra kwargs); ids are "<name>[+small]@<h>x<w>".
CASES = (
    ("lenet_l", (32, 32), {}),
    ("lenet_l", (227, 227), {}),
    ("lenet_l", (384, 256), {}),
    ("alexnet", (224, 224), {}),
    ("alexnet", (227, 227), {}),
    ("resnet50", (224, 224), {}),
    ("inception_v3", (299, 299), {}),
    ("mobilenet_v2", (224, 224), {}),
    ("dfs_resnet50", (224, 224), {}),
    ("dfs_inception_v3", (299, 299), {}),
    ("dfs_mobilenet_v2", (224, 224), {}),
    ("alexnet", (32, 32), {"small_input": True}),
    ("resnet50", (32, 32), {"small_input": True}),
    ("inception_v3", (32, 32), {"small_input": True}),
    ("mobilenet_v2", (32, 32), {"small_input": True}),
)


def case_id(name: str, hw: tuple[int, int], kwargs: dict) -> str:
  """`resnet50@224x224`, or `resnet50+small@32x32` with small_input=True."""
  return f"{name}{'+small' if kwargs.get('small_input') else ''}@{hw[0]}x{hw[1]}"


_CASE_IDS = tuple(case_id(*c) for c in CASES)

_CASES = flags.DEFINE_list("cases", list(_CASE_IDS), f"Cases to run, from: {list(_CASE_IDS)}.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward call.")
_ITERS = flags.DEFINE_integer("iters", 3, "Timed forward calls per case (after one warm-up).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classifier width.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for the host-filled weights and inputs.")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")


def host_variables(shapes, seed: int):
  """Variables for an init-shaped tree: fan-in-scaled normal kernels, zero biases and means,
  unit batch-norm scales and variances (float32 NumPy on the host, then device arrays)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if leaf.ndim >= 2:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) / np.sqrt(fan_in),
                         leaf.dtype)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def run_case(name: str, hw: tuple[int, int], kwargs: dict, *, batch_size: int, iters: int,
             num_classes: int, seed: int) -> dict:
  """Benchmarks one model; returns params, GFLOPs/image, compile s and images/s."""
  model = registry.get_model(name, num_classes=num_classes, **kwargs)
  x = jnp.asarray(np.random.default_rng(seed).standard_normal((batch_size, *hw, 3), np.float32))
  shapes = jax.eval_shape(model.init, jax.random.key(seed), x[:1])
  n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
  n_stats = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes.get("batch_stats", {})))
  variables = host_variables(shapes, seed)
  start = time.perf_counter()
  compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
  compile_s = time.perf_counter() - start
  gflops = flops.layer_flops(model, shapes, x) / batch_size / 1e9
  jax.block_until_ready(compiled(variables, x))  # warm-up
  start = time.perf_counter()
  for _ in range(iters):
    out = compiled(variables, x)
  jax.block_until_ready(out)
  elapsed = time.perf_counter() - start
  return dict(case=case_id(name, hw, kwargs), params=n_params, stats=n_stats, gflops=gflops,
              compile_s=compile_s, images_per_s=batch_size * iters / elapsed)


def format_table(rows: list[dict], *, command: str, batch_size: int, iters: int) -> str:
  """Markdown table with the command, device and date it was measured with."""
  device = jax.devices()[0]
  now = datetime.datetime.now(datetime.timezone.utc)
  lines = [
      f"### Models forward pass ({now:%Y-%m-%d %H:%M} UTC)",
      "",
      f"Command: `{command}`. Device: {device.platform} ({device.device_kind}), "
      f"{os.cpu_count()} host cores, jax {jax.__version__}; batch {batch_size}, eval mode, "
      f"float32, mean of {iters} calls after one warm-up.",
      "",
      "| case | params | BN stats | GFLOPs / image | compile s | images / s |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['case']} | {r['params']:,} | {r['stats']:,} | {r['gflops']:.3f} | "
                 f"{r['compile_s']:.1f} | {r['images_per_s']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv) -> None:
  """Validates flags, runs the selected cases, prints (and optionally appends) the table."""
  unknown = [c for c in _CASES.value if c not in _CASE_IDS]
  if unknown:
    launch.fail("benchmark models",
                f"--cases: unknown case(s) {unknown}; valid: {list(_CASE_IDS)}")
  for flag in (_BATCH_SIZE, _ITERS, _NUM_CLASSES):
    if flag.value < 1:
      launch.fail("benchmark models", f"--{flag.name} must be >= 1, got {flag.value}")
  rows = []
  for name, hw, kwargs in CASES:
    if case_id(name, hw, kwargs) not in _CASES.value:
      continue
    row = run_case(name, hw, kwargs, batch_size=_BATCH_SIZE.value, iters=_ITERS.value,
                   num_classes=_NUM_CLASSES.value, seed=_SEED.value)
    print(f"{row['case']}: {row['images_per_s']:.1f} images/s, {row['gflops']:.3f} GFLOPs/image, "
          f"compile {row['compile_s']:.1f} s", file=sys.stderr, flush=True)
    rows.append(row)
  command = " ".join(["python", "bin/benchmark.py"] + sys.argv[1:])
  table = format_table(rows, command=command.strip(), batch_size=_BATCH_SIZE.value,
                       iters=_ITERS.value)
  print(table)
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      f.write("\n" + table)
