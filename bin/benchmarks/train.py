"""Train benchmark: training images/s of cbir_jax's jitted train step vs the same net in PyTorch.

  python bin/benchmark.py train                      # LeNet-L @256x384 and AlexNet @227x227
  python bin/benchmark.py train --cases=lenet_l@256x384 --batch_size=32 --steps=10
  python bin/benchmark.py train --out=docs/BENCHMARKS.md

One process, the same architecture, batch, optimizer (SGD, momentum 0.9, softmax cross-entropy)
and cores in both frameworks (`--threads`: the process is pinned to that many cores, PyTorch
runs that many intra-op threads). Inputs are one fixed random batch already in memory (the input
pipeline is not timed). JAX: `cbir_jax.train.steps.jit_train_step` on a 1-device mesh, compiled
once (compile time reported apart), state donated. PyTorch: an eager nn.Module with the same
layers. Each side runs one warm-up step, then `--repeats` rounds of `--steps` timed steps, the
two frameworks alternating round by round (so a change in machine load hits both alike);
images/s = steps * batch / median round seconds. On a shared machine use --threads=1: PyTorch's
OpenMP threads collapse when other processes take the cores (LeNet-L 32x32: 1,600 img/s with
one thread, 50-140 with two on a loaded 2-core machine).
Needs torch (`pip install -e '.[bench]'`).
"""

import datetime
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax.models import registry
from cbir_jax.train import mesh as mesh_lib
from cbir_jax.train import optim, state as state_lib, steps

CASES = ("lenet_l@256x384", "alexnet@227x227", "lenet_l@32x32")

_CASES = flags.DEFINE_list("cases", list(CASES[:2]), f"Cases <model>@<h>x<w>, from {CASES}.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Training batch size (both frameworks).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed training steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
_THREADS = flags.DEFINE_integer(
    "threads", len(os.sched_getaffinity(0)),
    "CPU cores for both frameworks: the process is pinned to that many cores (before JAX starts "
    "its CPU client) and PyTorch uses that many intra-op threads.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classifier width (Corel-1K: 10).")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")


def _parse_case(case: str) -> tuple[str, int, int]:
  name, _, size = case.partition("@")
  if name not in ("lenet_l", "alexnet") or "x" not in size:
    raise ValueError(f"bad case {case!r}; expected one of {CASES}")
  h, w = (int(v) for v in size.split("x"))
  return name, h, w


def _torch_model(name: str, h: int, w: int, num_classes: int):
  """The PyTorch twin of cbir_jax's LeNet-L (tanh, avg pool, K = 1400) or AlexNet."""
  from torch import nn  # pylint: disable=g-import-not-at-top

  if name == "lenet_l":
    side = lambda s: ((s - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * side(h) * side(w), 1400), nn.Tanh(),
        nn.Linear(1400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, num_classes))
  return nn.Sequential(
      nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Dropout(0.5), nn.Linear(256 * 36, 4096),
      nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
      nn.Linear(4096, num_classes))


def _time(step, n: int) -> float:
  """Seconds of `n` calls of `step()` (which must block until done)."""
  start = time.perf_counter()
  for _ in range(n):
    step()
  return time.perf_counter() - start


def jax_step(name: str, h: int, w: int, batch: int, num_classes: int):
  """(step, compile seconds): one call of `step()` runs the jitted cbir_jax train step."""
  model = registry.get_model(name, num_classes=num_classes)
  tx = optim.make_optimizer({"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}, 10 ** 6)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  with jax.threefry_partitionable(False):  # As the trainer does: faster to compile on CPU.
    state = jax.jit(lambda r: state_lib.create_train_state(model, tx, r, (1, h, w, 3)),
                    out_shardings=rep)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  host = {"image": rng.standard_normal((batch, h, w, 3), np.float32),
          "label": rng.integers(0, num_classes, batch).astype(np.int32)}
  device_batch = mesh_lib.global_batch(host, data)
  train_step = steps.jit_train_step(rep, data)
  start = time.perf_counter()
  compiled = train_step.lower(state, device_batch).compile()
  compile_s = time.perf_counter() - start
  box = [state]

  def step():
    box[0], metrics = compiled(box[0], device_batch)
    jax.block_until_ready(metrics)

  step()  # warm-up
  return step, compile_s


def torch_step(name: str, h: int, w: int, batch: int, num_classes: int, threads: int):
  """One call of the returned `step()` is a training step of the PyTorch twin (SGD-momentum)."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = _torch_model(name, h, w, num_classes).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()
  x = torch.randn(batch, 3, h, w)
  y = torch.randint(0, num_classes, (batch,))

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    loss.item()

  step()  # warm-up
  return step


def main(argv) -> None:
  if len(argv) > 1:
    raise SystemExit(f"train benchmark: unexpected arguments {argv[1:]}")
  try:
    cases = [_parse_case(c) for c in _CASES.value]
  except ValueError as e:
    raise SystemExit(f"train benchmark: {e}") from e
  if _BATCH_SIZE.value < 1 or _STEPS.value < 1 or _REPEATS.value < 1 or _THREADS.value < 1:
    raise SystemExit("train benchmark: --batch_size, --steps, --repeats, --threads must be >= 1")
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise SystemExit("train benchmark: PyTorch is needed (pip install -e '.[bench]')") from e
  cores = sorted(os.sched_getaffinity(0))
  if _THREADS.value > len(cores):
    raise SystemExit(f"train benchmark: --threads={_THREADS.value} but only {len(cores)} cores "
                     "are available")
  # Before the first JAX call, so XLA:CPU sizes its thread pool to the pinned cores.
  os.sched_setaffinity(0, cores[:_THREADS.value])
  batch = _BATCH_SIZE.value
  rows = []
  n = _STEPS.value
  for name, h, w in cases:
    j_step, compile_s = jax_step(name, h, w, batch, _NUM_CLASSES.value)
    t_step = torch_step(name, h, w, batch, _NUM_CLASSES.value, _THREADS.value)
    # Alternate the two so a change in machine load hits both alike.
    j_times, t_times = [], []
    for _ in range(_REPEATS.value):
      j_times.append(_time(j_step, n))
      t_times.append(_time(t_step, n))
    j_ips = n * batch / statistics.median(j_times)
    t_ips = n * batch / statistics.median(t_times)
    rows.append((f"{name}@{h}x{w}", batch, j_ips, t_ips, j_ips / t_ips, compile_s))
    print(f"{rows[-1][0]}: jax {j_ips:.1f} img/s, torch {t_ips:.1f} img/s, ratio "
          f"{rows[-1][4]:.2f}", flush=True)
    del j_step, t_step
  device = jax.devices()[0]
  import torch  # pylint: disable=g-import-not-at-top,reimported
  header = (f"Training images/s, {datetime.date.today()}, {device.platform} "
            f"({device.device_kind}), pinned to {_THREADS.value} of {len(cores)} cores, jax "
            f"{jax.__version__}, torch "
            f"{torch.__version__} with {torch.get_num_threads()} threads, SGD-momentum, batch "
            f"{batch}, median of "
            f"{_REPEATS.value} x {_STEPS.value} steps.\n"
            f"Command: python bin/benchmark.py train --cases={','.join(_CASES.value)} "
            f"--batch_size={batch} --steps={_STEPS.value} --repeats={_REPEATS.value} "
            f"--threads={_THREADS.value}\n")
  table = ["| case | batch | JAX img/s | PyTorch img/s | JAX / PyTorch | JAX compile s |",
           "|---|---|---|---|---|---|"]
  table += [f"| {c} | {b} | {ji:.1f} | {ti:.1f} | {r:.2f}x | {cs:.1f} |"
            for c, b, ji, ti, r, cs in rows]
  text = header + "\n" + "\n".join(table) + "\n"
  print()
  print(text)
  if _OUT.value:
    with open(_OUT.value, "a", encoding="utf-8") as f:
      f.write("\n" + text)
