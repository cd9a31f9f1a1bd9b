"""Train benchmark: training images/s of cbir_jax's jitted train step vs the same net in PyTorch.

  python bin/benchmark.py train                      # LeNet-L @256x384 and AlexNet @227x227
  python bin/benchmark.py train --cases=lenet_l@256x384 --batch_size=32 --steps=10
  python bin/benchmark.py train --out=docs/BENCHMARKS.md

The same architecture, batch, optimizer (SGD, momentum 0.9, softmax cross-entropy) and cores in
both frameworks. Each framework runs in its own worker process (multiprocessing "spawn"), so
neither's allocator, thread pools or caches are left in the state the other one put them in
(in one shared process, the JAX AlexNet step slowed from ~530 to ~680 ms right after PyTorch
rounds). Both workers get the same environment, including GLIBC_TUNABLES with
glibc.malloc.hugetlb=1 (bin/benchmark.py re-executes itself with it unless
CBIR_JAX_MALLOC_TUNING=0; the header states the value), are pinned to the same `--threads`
cores before their framework starts (XLA:CPU sizes its pool to them; PyTorch runs that many
intra-op threads), and are built and warmed up one after the other before any timing. Inputs are
one fixed random batch already in memory (the input pipeline is not timed). JAX:
`cbir_jax.train.steps.jit_train_step` on a 1-device mesh, compiled once (compile time reported
apart), state donated. PyTorch: an eager nn.Module with the same layers. Then `--repeats` rounds
of `--steps` timed steps alternate between the frameworks: the parent tells one worker at a time
to run its round while the other waits on its pipe (so a change in machine load hits both
alike); images/s = steps * batch / median round seconds, each round timed inside its worker
after `--warmup` untimed steps (default 1). Training runs its steps back to back, but here each
worker sits idle while the other runs, and the first step after such a pause is not at steady
state: on this project's VM a JAX AlexNet step after an idle second took 650-850 ms instead of
~460 (docs/BENCHMARKS.md), which 3-step rounds would fold into the figure.
On a shared machine use --threads=1: PyTorch's OpenMP threads collapse when other processes take
the cores (LeNet-L 32x32: 1,600 img/s with one thread, 50-140 with two on a loaded 2-core
machine).

  python bin/benchmark.py train --device=gpu --batch_size=128        # on a CUDA machine

With --device=gpu both frameworks train on the first GPU: JAX on `jax.devices("gpu")[0]` (memory
allocated on demand, XLA_PYTHON_CLIENT_PREALLOCATE=false, so the two workers share the card),
PyTorch on "cuda:0" with cudnn.benchmark on; a step ends when its loss is on the host, in both.
--gpu_precision picks the float32 arithmetic of matrix products and convolutions for both alike:
"tf32" (JAX's default precision; PyTorch with TF32 allowed for matmuls and cuDNN) or "fp32"
(jax_default_matmul_precision=highest; PyTorch with TF32 off).
Needs torch (`pip install -e '.[bench]'`).
"""

import datetime
import importlib.util
import multiprocessing
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cbir_jax._bin import launch
from cbir_jax._bin.benchmarks import common
from cbir_jax.models import registry
from cbir_jax.train import mesh as mesh_lib
from cbir_jax.train import optim, state as state_lib, steps

CASES = ("lenet_l@256x384", "alexnet@227x227", "lenet_l@32x32")

_CASES = flags.DEFINE_list("cases", list(CASES[:2]), f"Cases <model>@<h>x<w>, from {CASES}.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Training batch size (both frameworks).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed training steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
_WARMUP = flags.DEFINE_integer(
    "warmup", 1, "Untimed steps at the start of every round, in both frameworks: a worker has "
    "waited idle while the other ran, and the first step after a pause is not a training step "
    "at steady state (0: time it too).")
_THREADS = flags.DEFINE_integer(
    "threads", len(os.sched_getaffinity(0)),
    "CPU cores for both frameworks: each worker process is pinned to the same that many cores "
    "(before its framework starts) and PyTorch uses that many intra-op threads.")
_DEVICE = flags.DEFINE_enum(
    "device", "cpu", ["cpu", "gpu"], "Where both frameworks train: the pinned CPU cores, or the "
    "first GPU (CUDA) in both.")
_GPU_PRECISION = flags.DEFINE_enum(
    "gpu_precision", "tf32", ["tf32", "fp32"], "With --device=gpu: float32 matrix products and "
    "convolutions in TF32 (JAX's default; PyTorch told to allow it) or in full float32 (both).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classifier width (Corel-1K: 10).")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")


def _parse_case(case: str) -> tuple[str, int, int]:
  name, _, size = case.partition("@")
  if name not in ("lenet_l", "alexnet") or "x" not in size:
    raise ValueError(f"bad case {case!r}; expected one of {CASES}")
  try:
    h, w = (int(v) for v in size.split("x"))
  except ValueError:
    raise ValueError(f"bad case {case!r}: the size must be <h>x<w> in pixels") from None
  if min(h, w) < 1:
    raise ValueError(f"bad case {case!r}: the size must be positive")
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


def jax_step(name: str, h: int, w: int, batch: int, num_classes: int, platform: str = "cpu"):
  """(step, compile seconds): one call of `step()` runs the jitted cbir_jax train step on the
  first device of `platform`."""
  model = registry.get_model(name, num_classes=num_classes)
  tx = optim.make_optimizer({"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}, 10 ** 6)
  mesh = mesh_lib.make_mesh(jax.devices(platform)[:1])
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


def torch_step(name: str, h: int, w: int, batch: int, num_classes: int, threads: int,
               device: str = "cpu"):
  """One call of the returned `step()` is a training step of the PyTorch twin (SGD-momentum) on
  `device` ("cpu" or "cuda"); it returns once the loss is on the host."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = _torch_model(name, h, w, num_classes).train().to(device)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()
  x = torch.randn(batch, 3, h, w).to(device)
  y = torch.randint(0, num_classes, (batch,)).to(device)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    loss.item()

  step()  # warm-up
  return step


PROG = "benchmark train"


def _set_gpu_precision(framework: str, precision: str) -> str:
  """Sets `framework`'s float32 matmul/convolution arithmetic on GPU; returns it in words."""
  if framework == "jax":
    if precision == "fp32":
      jax.config.update("jax_default_matmul_precision", "highest")
    return f"jax_default_matmul_precision={jax.config.jax_default_matmul_precision}"
  import torch  # pylint: disable=g-import-not-at-top
  tf32 = precision == "tf32"
  torch.backends.cuda.matmul.allow_tf32 = tf32
  torch.backends.cudnn.allow_tf32 = tf32
  torch.backends.cudnn.benchmark = True
  return f"allow_tf32={tf32} (matmul and cuDNN), cudnn.benchmark=True"


def _worker(framework: str, case: tuple[str, int, int], batch: int, num_classes: int,
            cores: list[int], device: str, precision: str, conn) -> None:
  """Worker process of one framework: pins itself to `cores`, builds and warms up the step on
  `device` ("cpu" or "gpu"), sends ("ready", info), then answers each ("run", n, warmup) with
  ("time", seconds of n steps) until "stop"."""
  try:
    # Before the framework starts its thread pools, so they are sized to the pinned cores.
    os.sched_setaffinity(0, cores)
    info = {}
    if device == "gpu":
      # The two workers share the card: allocate on demand (before JAX starts its client).
      os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
      info["precision"] = _set_gpu_precision(framework, precision)
    name, h, w = case
    if framework == "jax":
      step, compile_s = jax_step(name, h, w, batch, num_classes, device)
      dev = jax.devices(device)[0]
      info.update(compile_s=compile_s, device=f"{dev.platform} ({dev.device_kind})")
    else:
      import torch  # pylint: disable=g-import-not-at-top
      step = torch_step(name, h, w, batch, num_classes, len(cores),
                        "cuda" if device == "gpu" else "cpu")
      info.update(version=torch.__version__, threads=torch.get_num_threads())
      if device == "gpu":
        info["device"] = torch.cuda.get_device_name(0)
    info["tunables"] = os.environ.get("GLIBC_TUNABLES", "")
    conn.send(("ready", info))
    while True:
      message = conn.recv()
      if message == "stop":
        return
      conn.send(("time", common.time_steps(step, *message[1:])))
  except Exception as e:  # pylint: disable=broad-except
    conn.send(("error", f"{type(e).__name__}: {launch.one_line(e)}"))
  finally:
    conn.close()


class _Worker:
  """Parent-side handle of a `_worker` process."""

  def __init__(self, ctx, framework: str, *args):
    self.framework = framework
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_worker, args=(framework, *args, child), daemon=True)
    self.process.start()
    child.close()

  def receive(self, kind: str):
    try:
      got, value = self.conn.recv()
    except EOFError:
      self.process.join()
      launch.fail(PROG, f"the {self.framework} worker died (exit code {self.process.exitcode})")
    if got == "error":
      launch.fail(PROG, f"{self.framework} worker: {value}")
    assert got == kind, (got, kind)
    return value

  def run(self, n: int, warmup: int) -> float:
    self.conn.send(("run", n, warmup))
    return self.receive("time")

  def stop(self) -> None:
    try:
      self.conn.send("stop")
    except OSError:
      pass
    self.process.join(timeout=60)
    if self.process.is_alive():
      self.process.kill()


def main(argv) -> None:
  if len(argv) > 1:
    launch.fail(PROG, f"unexpected arguments {argv[1:]}")
  try:
    cases = [_parse_case(c) for c in _CASES.value]
  except ValueError as e:
    launch.fail(PROG, f"--cases: {e}")
  for flag in (_BATCH_SIZE, _STEPS, _REPEATS, _THREADS, _NUM_CLASSES):
    if flag.value < 1:
      launch.fail(PROG, f"--{flag.name} must be >= 1, got {flag.value}")
  if _WARMUP.value < 0:
    launch.fail(PROG, f"--warmup must be >= 0, got {_WARMUP.value}")
  cores = sorted(os.sched_getaffinity(0))
  if _THREADS.value > len(cores):
    launch.fail(PROG, f"--threads={_THREADS.value} but only {len(cores)} cores are available")
  if importlib.util.find_spec("torch") is None:  # Imported by its worker only.
    launch.fail(PROG, "PyTorch is needed (pip install -e '.[bench]')")
  pinned = cores[:_THREADS.value]
  batch, n = _BATCH_SIZE.value, _STEPS.value
  ctx = multiprocessing.get_context("spawn")
  rows, info = [], {}
  for case in cases:
    workers = {}
    try:
      # One after the other: the JAX compile time is not shared with PyTorch's warm-up.
      for framework in ("jax", "torch"):
        workers[framework] = _Worker(ctx, framework, case, batch, _NUM_CLASSES.value, pinned,
                                     _DEVICE.value, _GPU_PRECISION.value)
        info[framework] = workers[framework].receive("ready")
      times = {"jax": [], "torch": []}
      for _ in range(_REPEATS.value):  # Alternate so a change in machine load hits both alike.
        for framework in ("jax", "torch"):
          times[framework].append(workers[framework].run(n, _WARMUP.value))
    finally:
      for worker in workers.values():
        worker.stop()
    j_ips = n * batch / statistics.median(times["jax"])
    t_ips = n * batch / statistics.median(times["torch"])
    name, h, w = case
    rows.append((f"{name}@{h}x{w}", batch, j_ips, t_ips, j_ips / t_ips,
                 info["jax"]["compile_s"]))
    print(f"{rows[-1][0]}: jax {j_ips:.1f} img/s, torch {t_ips:.1f} img/s, ratio "
          f"{rows[-1][4]:.2f} (ms/step jax "
          f"{', '.join(f'{1e3 * t / n:.0f}' for t in times['jax'])}; torch "
          f"{', '.join(f'{1e3 * t / n:.0f}' for t in times['torch'])})", flush=True)
  tunables = info["jax"]["tunables"] or "(unset)"
  where = f"pinned to {_THREADS.value} of {len(cores)} cores"
  if _DEVICE.value == "gpu":
    where = (f"torch on {info['torch']['device']}, GPU precision {_GPU_PRECISION.value} "
             f"(jax: {info['jax']['precision']}; torch: {info['torch']['precision']}), host "
             f"processes {where}")
  gpu_flags = (f" --device=gpu --gpu_precision={_GPU_PRECISION.value}"
               if _DEVICE.value == "gpu" else "")
  header = (f"Training images/s, {datetime.date.today()}, jax on {info['jax']['device']}, "
            f"{where}, jax {jax.__version__}, torch "
            f"{info['torch']['version']} with {info['torch']['threads']} threads, each "
            f"framework in its own worker process (alternating rounds), "
            f"GLIBC_TUNABLES={tunables}, SGD-momentum, batch {batch}, median of "
            f"{_REPEATS.value} x {_STEPS.value} steps, each round after {_WARMUP.value} untimed "
            f"step(s).\n"
            f"Command: python bin/benchmark.py train --cases={','.join(_CASES.value)} "
            f"--batch_size={batch} --steps={_STEPS.value} --repeats={_REPEATS.value} "
            f"--warmup={_WARMUP.value} --threads={_THREADS.value}{gpu_flags}\n")
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
