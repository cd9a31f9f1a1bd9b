"""Search-service benchmark: query-by-image latency and requests/s of `cbir-serve` vs `cbir-search`.

  python bin/benchmark.py serve --index=runs/demo/float.index     # after cbir-demo; minutes
  python bin/benchmark.py serve --index=runs/demo/float.index --big_n=0 --out=docs/BENCHMARKS.md

For the digits demo's float index and a 1M-vector FloatIndex (the demo's vectors plus seeded
Gaussian rows with the same per-dimension mean and spread, saved with the demo's provenance so
it is searchable by image with the demo's model), it starts `bin/serve.py` as a server process on
a free loopback port (start-up = until /health answers: imports, index and model loading,
compiling every batch size), then sends `--requests` image uploads (the digits test split's
8x8 images as PNG, k=10) from 1 and from 8 client threads (httpx, keep-alive), and once more
at concurrency 8 with micro-batching off (--max_batch=1). Latency is per request, measured by
the client. Beside it, the same query through `bin/search.py --query=<png>` as one process per
query (start-up included: what a user waits for without the service), one at a time and 8 at
once. Each row records the 1-minute load average before it ran (the machine may be shared).
"""

import concurrent.futures
import datetime
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

from absl import flags
import numpy as np

from cbir_jax._bin import launch

_INDEX = flags.DEFINE_string("index", "runs/demo/float.index", "The digits demo's float index "
                             "(cbir-demo --workdir=runs/demo writes it).")
_BIG_N = flags.DEFINE_integer("big_n", 1_000_000, "Rows of the large FloatIndex (0: skip it).")
_REQUESTS = flags.DEFINE_integer("requests", 400, "Service requests per (index, concurrency).")
_CONCURRENCY = flags.DEFINE_list("concurrency", ["1", "8"], "Client threads to measure.")
_CLI_MIN = flags.DEFINE_integer("cli_processes", 3, "cbir-search processes at each concurrency: "
                                "this many, or the concurrency if larger (8 at once at 8).")
_K = flags.DEFINE_integer("k", 10, "Results per query.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the large index's synthetic rows.")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")

_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def _load() -> float:
  with open("/proc/loadavg", encoding="ascii") as f:
    return float(f.read().split()[0])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _query_pngs(folder: str, count: int = 16) -> list[str]:
  """The first `count` images of the digits test split as PNG files."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from cbir_jax.data import datasets  # pylint: disable=import-outside-toplevel
  images = datasets.load_arrays("digits", "test").images[:count]
  paths = []
  for i, image in enumerate(images):
    path = os.path.join(folder, f"q{i:02d}.png")
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    paths.append(path)
  return paths


def _big_index(demo_index: str, n: int, seed: int, path: str) -> None:
  """The demo's vectors plus n - len(demo) Gaussian rows (same mean/std per dimension)."""
  from cbir_jax.index import FloatIndex, load_index  # pylint: disable=import-outside-toplevel
  demo = load_index(demo_index)
  vectors = demo.vectors
  extra = n - len(vectors)
  if extra < 0:
    raise ValueError(f"--big_n={n} is smaller than the demo index ({len(vectors)})")
  rng = np.random.default_rng(seed)
  mean, std = vectors.mean(0), vectors.std(0)
  meta = dict(demo.metadata)
  labels = meta.get("labels")
  if labels is not None:
    meta["labels"] = list(labels) + [-1] * extra
  big = FloatIndex(vectors.shape[1], metadata=meta)
  big.add(vectors, ids=demo.ids)
  start = int(demo.ids.max()) + 1
  for lo in range(0, extra, 100_000):
    m = min(100_000, extra - lo)
    rows = (rng.standard_normal((m, vectors.shape[1]), np.float32) * std + mean)
    big.add(rows.astype(np.float32), ids=np.arange(start + lo, start + lo + m))
  big.save(path)


def _start_server(index: str, port: int, max_batch: int):
  import httpx  # pylint: disable=import-outside-toplevel
  cmd = [sys.executable, os.path.join(_BIN, "serve.py"), f"--index={index}", f"--port={port}",
         f"--max_batch={max_batch}", f"--k={_K.value}"]
  started = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  url = f"http://127.0.0.1:{port}"
  while True:
    if proc.poll() is not None:
      raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stdout.read()[-2000:]}")
    try:
      if httpx.get(f"{url}/health", timeout=1).status_code == 200:
        return proc, url, time.perf_counter() - started
    except httpx.HTTPError:
      pass
    if time.perf_counter() - started > 900:
      proc.kill()
      raise RuntimeError("the server did not answer /health within 900 s")
    time.sleep(0.2)


def _stop(proc) -> None:
  proc.terminate()
  try:
    proc.wait(30)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()


def _load_test(url: str, pngs: list[bytes], clients: int, requests: int) -> dict:
  import httpx  # pylint: disable=import-outside-toplevel

  def client(worker: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=300) as http:
      http.get("/health")  # open the keep-alive connection outside the timing
      for r in range(worker, requests, clients):
        start = time.perf_counter()
        res = http.post(f"/search?k={_K.value}",
                        files={"image": ("q.png", pngs[r % len(pngs)], "image/png")})
        out.append(time.perf_counter() - start)
        if res.status_code != 200:
          raise RuntimeError(f"request failed: {res.status_code} {res.text[:300]}")
    return out

  with httpx.Client(base_url=url, timeout=300) as http:  # one request per bucket is warm already
    for i in range(4):
      http.post(f"/search?k={_K.value}", files={"image": ("q.png", pngs[i], "image/png")})
    before = http.get("/stats").json()["indexes"][0]
  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    latencies = [s for rows in pool.map(client, range(clients)) for s in rows]
  wall = time.perf_counter() - started
  after = httpx.get(f"{url}/stats").json()["indexes"][0]
  batches = after["batches"] - before["batches"]
  return {"latencies": np.asarray(latencies) * 1e3, "wall": wall, "requests": len(latencies),
          "mean_batch": (after["queries"] - before["queries"]) / max(batches, 1)}


def _cli_test(index: str, paths: list[str], clients: int, processes: int, out_dir: str) -> dict:
  def one(job: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(_BIN, "search.py"), f"--index={index}",
                           f"--query={paths[job % len(paths)]}", f"--k={_K.value}",
                           f"--out={os.path.join(out_dir, f'cli{job}')}"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
      raise RuntimeError(f"cbir-search failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    latencies = list(pool.map(one, range(processes)))
  wall = time.perf_counter() - started
  return {"latencies": np.asarray(latencies) * 1e3, "wall": wall, "requests": len(latencies),
          "mean_batch": None}


def _row(name, n, path, clients, result, load, note=""):
  lat = result["latencies"]
  batch = "" if result["mean_batch"] is None else f"{result['mean_batch']:.2f}"
  return (f"| {name} | {n:,} | {path} | {clients} | {result['requests']} | "
          f"{np.percentile(lat, 50):,.1f} | {np.percentile(lat, 99):,.1f} | "
          f"{_rate(result['requests'] / result['wall'])} | {batch} | {load:.1f} | {note} |")


def _rate(per_second: float) -> str:
  return f"{per_second:,.1f}" if per_second >= 10 else f"{per_second:.3g}"


def main(argv) -> None:
  if len(argv) > 1:
    launch.fail("benchmark serve", f"unexpected arguments {argv[1:]}")
  if not os.path.isfile(_INDEX.value):
    launch.fail("benchmark serve", f"--index {_INDEX.value!r} is not a file; run "
                "`cbir-demo --workdir=runs/demo` first")
  concurrency = [int(c) for c in _CONCURRENCY.value]
  logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
  rows = []
  with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
    paths = _query_pngs(tmp)
    pngs = [open(p, "rb").read() for p in paths]  # pylint: disable=consider-using-with
    cases = [("digits demo", os.path.abspath(_INDEX.value))]
    if _BIG_N.value:
      big = os.path.join(tmp, "big.index")
      started = time.perf_counter()
      _big_index(_INDEX.value, _BIG_N.value, _SEED.value, big)
      print(f"built the {_BIG_N.value:,}-vector index in {time.perf_counter() - started:.1f} s",
            flush=True)
      cases.append((f"{_BIG_N.value // 1_000_000}M FloatIndex"
                    if _BIG_N.value % 1_000_000 == 0 else f"{_BIG_N.value:,} FloatIndex", big))
    from cbir_jax.index import load_index  # pylint: disable=import-outside-toplevel
    for name, index in cases:
      n = len(load_index(index)) if index == cases[0][1] else _BIG_N.value
      for max_batch, levels in ((8, concurrency), (1, [c for c in concurrency if c > 1])):
        if not levels:
          continue
        proc, url, startup = _start_server(index, _free_port(), max_batch)
        try:
          for clients in levels:
            load = _load()
            result = _load_test(url, pngs, clients, _REQUESTS.value)
            label = "cbir-serve" if max_batch > 1 else "cbir-serve, --max_batch=1"
            rows.append(_row(name, n, label, clients, result, load,
                             f"server start-up {startup:.1f} s"))
            print(rows[-1], flush=True)
        finally:
          _stop(proc)
      for clients in concurrency:
        load = _load()
        result = _cli_test(index, paths, clients, max(clients, _CLI_MIN.value), tmp)
        rows.append(_row(name, n, "cbir-search, a process per query", clients, result, load))
        print(rows[-1], flush=True)
  header = ("| index | N | path | concurrency | requests | p50 ms | p99 ms | requests/s | "
            "mean batch | load (1 min) | note |\n|---|---|---|---|---|---|---|---|---|---|---|")
  table = header + "\n" + "\n".join(rows)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  cpu = platform.processor() or platform.machine()
  text = (f"\nSearch service, {stamp}, {os.cpu_count()} CPUs ({cpu}), k={_K.value}; command: "
          f"`python bin/benchmark.py serve {' '.join(sys.argv[2:])}`\n\n{table}\n")
  print(text)
  if _OUT.value:
    with open(_OUT.value, "a", encoding="utf-8") as f:
      f.write(text)
