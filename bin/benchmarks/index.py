"""Index benchmark: a folder of JPEGs -> features -> index, cbir_jax streaming vs PyTorch.

  python bin/benchmark.py index                                  # 200,000 images at 64x64
  python bin/benchmark.py index --num_images=20000 --out=docs/BENCHMARKS.md

Generates (once, seeded; reused while its `.complete` marker matches) `--num_images` synthetic
64x64 JPEGs in `--cache_dir` (git-ignored runs/), 100 class folders: each image a random 8x8
pattern around a class colour, bilinearly upscaled, JPEG quality 90. Then the same job twice,
each in its own fresh process (multiprocessing "spawn"), one after the other:

  cbir_jax   `jobs.streaming.build_index_streaming`: grain threads (`--workers`) read, decode
             and resize, LeNet-L's f6 (K = --lk_features) is extracted by the jitted forward in
             --batch_size batches, features go to chunk files and the final FloatIndex file;
  PyTorch    what a PyTorch user writes: torchvision `ImageFolder` + `Resize` + `ToTensor` +
             `Normalize(0.5, 0.5)`, `DataLoader(batch_size, num_workers=--workers)`, the same
             LeNet-L layers up to f6 (nn.Sequential, eval, `torch.inference_mode`), features
             gathered into one array and saved with `np.save`.

Both start from the same random-initialised network shape (weights are not shared: the timing
does not depend on them), read the same files, and are timed end to end (process start to
file written, the JAX compile included). images/s = images / seconds; peak RSS is the main
process's `ru_maxrss` (and, for PyTorch, the largest DataLoader worker's). Estimates for 1M and
10M images are the measured rate extrapolated (the build is streaming: memory does not grow
with the image count but for the index itself, 84 float32 = 336 bytes per image).
Needs torch and torchvision (`pip install -e '.[bench]'`).
"""

import datetime
import json
import multiprocessing
import os
import resource
import time

from absl import flags
import numpy as np

from cbir_jax._bin import launch

_NUM_IMAGES = flags.DEFINE_integer("num_images", 200_000, "Synthetic JPEGs in the folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "runs/bench_index_images", "Where the folder is "
                                 "generated once (git-ignored runs/ by default).")
_SIDE = flags.DEFINE_integer("side", 64, "Image side (stored and extracted).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per forward pass (both).")
_WORKERS = flags.DEFINE_integer("workers", 2, "cbir_jax decode threads / PyTorch DataLoader "
                                "worker processes.")
_LK = flags.DEFINE_integer("lk_features", 1400, "LeNet-L's K (the paper's 1400).")
_FRAMEWORKS = flags.DEFINE_list("frameworks", ["cbir_jax", "pytorch"], "Which to run.")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")

CLASSES = 100
SEED = 0


def make_folder(root: str, num_images: int, side: int) -> str:
  """Writes root/c<k>/<i>.jpg (seeded) unless root/.complete says it is there; returns root."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  marker = os.path.join(root, ".complete")
  want = {"num_images": num_images, "side": side, "classes": CLASSES, "seed": SEED}
  if os.path.exists(marker):
    with open(marker) as f:
      if json.load(f) == want:
        return root
  rng = np.random.default_rng(SEED)
  colors = rng.integers(30, 226, (CLASSES, 3))
  for k in range(CLASSES):
    os.makedirs(os.path.join(root, f"c{k:03d}"), exist_ok=True)
  for i in range(num_images):
    k = i % CLASSES
    small = np.clip(colors[k] + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR)
    image.save(os.path.join(root, f"c{k:03d}", f"{i // CLASSES:06d}.jpg"), quality=90)
  from cbir_jax import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_json(marker, want)
  return root


def _peak_rss_mib(who: int) -> float:
  return resource.getrusage(who).ru_maxrss / 1024.0


def run_cbir_jax(root: str, out_dir: str, side: int, batch: int, workers: int, lk: int) -> dict:
  """The streaming build of `root` (see the module docstring); returns its measurements."""
  start = time.perf_counter()
  import jax  # pylint: disable=import-outside-toplevel
  from cbir_jax.data import sources  # pylint: disable=import-outside-toplevel
  from cbir_jax.jobs import networks, streaming  # pylint: disable=import-outside-toplevel
  from cbir_jax.models import registry  # pylint: disable=import-outside-toplevel
  model = registry.get_model("lenet_l", num_classes=CLASSES, lk_features=lk)
  variables = jax.jit(lambda r: model.init(r, np.zeros((1, side, side, 3), np.float32)))(
      jax.random.PRNGKey(0))
  run = networks.Restored(model, variables, "lenet_l")
  source = sources.ImageFolderSource(root)
  out = os.path.join(out_dir, "bench.cbiridx")
  built = streaming.build_index_streaming(
      run, "f6", source, out, image_shape=(side, side, 3), chunk_size=32 * batch,
      batch_size=batch, num_threads=workers, progress=False,
      dataset={"name": "image_folder", "split": "all", "manual_dir": root})
  seconds = time.perf_counter() - start
  return {"images": len(built.index), "seconds": seconds,
          "rss_mib": _peak_rss_mib(resource.RUSAGE_SELF), "workers_rss_mib": None,
          "device": str(jax.devices()[0].platform)}


def run_pytorch(root: str, out_dir: str, side: int, batch: int, workers: int, lk: int) -> dict:
  """The PyTorch user's job on `root` (see the module docstring); returns its measurements."""
  start = time.perf_counter()
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  from torchvision import transforms  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  after_pool = ((side - 4) // 2 - 4) // 2
  model = nn.Sequential(  # LeNet-L up to f6: c1, s2, c3, s4, L-K, c5, f6 (tanh, 2x2 avg pools).
      nn.Conv2d(3, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * after_pool * after_pool, lk), nn.Tanh(),
      nn.Linear(lk, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh()).eval()
  dataset = torchvision.datasets.ImageFolder(root, transform=transforms.Compose([
      transforms.Resize((side, side)), transforms.ToTensor(),
      transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
  loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers,
                                       shuffle=False)
  parts = []
  with torch.inference_mode():
    for images, _ in loader:
      parts.append(model(images).numpy())
  features = np.concatenate(parts)
  np.save(os.path.join(out_dir, "bench_torch.npy"), features)
  seconds = time.perf_counter() - start
  return {"images": int(features.shape[0]), "seconds": seconds,
          "rss_mib": _peak_rss_mib(resource.RUSAGE_SELF),
          "workers_rss_mib": _peak_rss_mib(resource.RUSAGE_CHILDREN), "device": "cpu"}


def _worker(name: str, args: tuple, queue) -> None:
  try:
    queue.put((name, {"cbir_jax": run_cbir_jax, "pytorch": run_pytorch}[name](*args)))
  except Exception as e:  # pylint: disable=broad-except
    queue.put((name, {"error": f"{type(e).__name__}: {e}"}))


def _duration(seconds: float) -> str:
  hours = seconds / 3600
  return f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def main(argv) -> None:
  if len(argv) > 1:
    launch.fail("benchmark index", f"unexpected arguments {argv[1:]}")
  if _NUM_IMAGES.value < CLASSES:
    launch.fail("benchmark index", f"--num_images must be >= {CLASSES}, got {_NUM_IMAGES.value}")
  for name, flag, low in (("batch_size", _BATCH_SIZE, 1), ("workers", _WORKERS, 1),
                          ("side", _SIDE, 16), ("lk_features", _LK, 1)):
    if flag.value < low:
      launch.fail("benchmark index", f"--{name} must be >= {low}, got {flag.value}")
  unknown = set(_FRAMEWORKS.value) - {"cbir_jax", "pytorch"}
  if unknown:
    launch.fail("benchmark index", f"--frameworks: unknown {sorted(unknown)}; valid: cbir_jax, "
                "pytorch")
  root = os.path.abspath(os.path.join(_CACHE_DIR.value, f"{_NUM_IMAGES.value}x{_SIDE.value}"))
  t = time.perf_counter()
  make_folder(root, _NUM_IMAGES.value, _SIDE.value)
  print(f"folder {root}: {_NUM_IMAGES.value} JPEGs ({time.perf_counter() - t:.0f} s to make or "
        "check)", flush=True)
  out_dir = os.path.join(os.path.dirname(root), "out")
  os.makedirs(out_dir, exist_ok=True)
  args = (root, out_dir, _SIDE.value, _BATCH_SIZE.value, _WORKERS.value, _LK.value)
  context = multiprocessing.get_context("spawn")
  results = {}
  for name in _FRAMEWORKS.value:
    queue = context.Queue()
    process = context.Process(target=_worker, args=(name, args, queue))
    process.start()
    _, results[name] = queue.get()
    process.join()
    if "error" in results[name]:
      launch.fail("benchmark index", f"{name} failed: {results[name]['error']}")
    print(f"{name}: {results[name]}", flush=True)
  base = results.get("pytorch")
  lines = [
      f"\n### Index build from a JPEG folder ({datetime.date.today().isoformat()}, "
      f"{os.cpu_count()} CPU cores, no GPU)\n",
      f"`python bin/benchmark.py index --num_images={_NUM_IMAGES.value} "
      f"--batch_size={_BATCH_SIZE.value} --workers={_WORKERS.value}`: {_NUM_IMAGES.value} "
      f"synthetic {_SIDE.value}x{_SIDE.value} JPEGs -> LeNet-L (K={_LK.value}) f6 -> index, end "
      "to end.\n",
      "| framework | images | seconds | images/s | vs PyTorch | peak RSS (MiB) | 1M images | "
      "10M images |", "|---|---|---|---|---|---|---|---|"]
  for name, r in results.items():
    rate = r["images"] / r["seconds"]
    ratio = f"{rate / (base['images'] / base['seconds']):.2f}x" if base else "-"
    rss = f"{r['rss_mib']:.0f}" + (f" (+ workers {r['workers_rss_mib']:.0f} each)"
                                   if r["workers_rss_mib"] else "")
    lines.append(f"| {name} | {r['images']} | {r['seconds']:.1f} | {rate:,.0f} | {ratio} | {rss} "
                 f"| {_duration(1e6 / rate)} | {_duration(1e7 / rate)} |")
  table = "\n".join(lines) + "\n"
  print(table)
  if _OUT.value:
    with open(_OUT.value, "a", encoding="utf-8") as f:
      f.write(table)
