"""Search benchmark: cbir_jax exact top-k kernels vs FAISS IndexFlatL2 / IndexBinaryFlat.

  python bin/benchmark.py search                 # the issue-7 cases (N up to 10M; minutes)
  python bin/benchmark.py search --quick         # N / 10, seconds
  python bin/benchmark.py search --cases=l2_1M_d128,ham64_1M --repeats=5 --out=docs/BENCHMARKS.md
  python bin/benchmark.py search --engines=faiss,faiss1,jax,jax_gemm,jax_pure
  python bin/benchmark.py search --cases=l2_1M_d128 --engines=faiss,faiss1,jax --processes=4
  python bin/benchmark.py search --queries=1,10,100 --cases=l2_1M_d128,ham64_1M,ham256_1M \
      --engines=faiss,faiss1,jax --processes=2 --repeats=5     # the latency regime, one table per Q
  python bin/benchmark.py search --serving=300 --cases=l2_1M_d128,ham64_1M \
      --engines=faiss,faiss1,jax                               # a saved index, one query at a time

Every (case, engine) runs in its own subprocess on the same seeded data: build the engine's database
copy (FAISS `add`, or `jnp.asarray`), free the NumPy source, record RSS, one warm-up search
(compiles the JAX kernel; its time is reported as "first call"), then `--repeats` timed searches
(best is reported, with the process CPU seconds it used). Each value of --queries gets its own
table, with a "read-bound limit" column: queries/s if a search cost only one read of the database
at the plain read bandwidth measured at the start of the run (`_read_bandwidth`: the best of
NumPy's max over a 512 MiB array on 1 and on all cores).

--serving=N measures the serving regime instead: each case's database is saved once as an index
file (`cbir_jax.index` FloatIndex / BinaryIndex, and FAISS's own `write_index`); each engine's
process loads its file once, answers 5 warm-up queries, then N single queries one after another
through the public `search(q[None], k)`, and the table gives the p50 / p99 latency of one call and
the queries/s of the stream, checked against FAISS's answers. Peak extra memory is VmHWM minus the VmRSS
measured just before the first search (the HWM is reset via /proc/self/clear_refs), i.e. memory
beyond the database and queries: "steady" over the timed searches (including buffers XLA kept from
the first call), "first" over the first call (including compilation). Results are checked against
FAISS: Euclidean distances to 1e-3 relative, Hamming distances exactly. "vs FAISS" divides the
faster FAISS configuration that ran (faiss: all OpenMP threads; faiss1: one thread, which suffers
less on a shared, oversubscribed machine) by ours. With --processes=P every (case, engine) runs
in P fresh processes, engines taking turns; "vs FAISS" compares the best processes and "vs FAISS,
median process" the medians over processes of each process's best time (FAISS's OpenMP search
lands in a fast or a slow mode per process, so one process can mislead either way).

On a machine with a GPU the JAX engines run on it (JAX's default device) and so does `torch`;
FAISS stays on the CPU (its GPU wheels need CUDA 12's cuBLAS). There "GPU peak extra MiB" is the
device memory the searches took beyond the database and queries (JAX: the allocator's peak, with
XLA_PYTHON_CLIENT_PREALLOCATE=false; PyTorch: max_memory_allocated), and "vs FAISS's results"
gives the recall@k of the ids where the distances differ (jax_approx).

  python bin/benchmark.py search --cases=l2_1M_d128 --engines=faiss,jax,jax_naive,jax_approx,torch
"""

import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags
import numpy as np

from cbir_jax._bin import launch
from cbir_jax._bin.benchmarks import common

# name -> (metric, database rows, dim or bits).
CASES = {
    "l2_100k_d128": ("l2", 100_000, 128),
    "l2_1M_d128": ("l2", 1_000_000, 128),
    "ham64_100k": ("hamming", 100_000, 64),
    "ham64_1M": ("hamming", 1_000_000, 64),
    "ham64_10M": ("hamming", 10_000_000, 64),
    "ham256_100k": ("hamming", 100_000, 256),
    "ham256_1M": ("hamming", 1_000_000, 256),
    "ham256_10M": ("hamming", 10_000_000, 256),
}
ENGINES = ("faiss", "faiss1", "jax", "jax_bf16", "jax_gemm", "jax_pure", "jax_naive",
           "jax_approx", "torch")
# Engines that run the L2 cases only.
_L2_ONLY = ("jax_bf16", "jax_naive", "jax_approx", "torch")
# Engines of the serving benchmark (--serving).
_SERVING_ENGINES = ("faiss", "faiss1", "jax", "jax_bf16")

_CASES = flags.DEFINE_list("cases", list(CASES), f"Cases to run, from {list(CASES)}.")
_ENGINES = flags.DEFINE_list("engines", ["faiss", "jax"],
                             f"Engines, from {list(ENGINES)} (faiss1: FAISS on one OpenMP thread; "
                             "jax: the default method, the native FFI kernels where built; "
                             "jax_bf16: L2 from a bfloat16 copy with exact float32 re-scoring "
                             "(kernels.half; FloatIndex(storage='bfloat16') with --serving); "
                             "jax_gemm: Hamming by +-1 GEMM; jax_pure: the pure-JAX kernels, "
                             "method='jax' for L2 and 'popcount' for Hamming; L2 only, what a user would write instead: jax_naive: "
                             "the whole (Q, N) matrix then lax.top_k, jax_approx: the same with "
                             "lax.approx_min_k (recall_target 0.95), torch: the whole matrix "
                             "by torch.mm then torch.topk, on CUDA when there is a GPU).")
_QUICK = flags.DEFINE_bool("quick", False, "Divide every N by 10 (and skip nothing else).")
_QUERIES = flags.DEFINE_list("queries", ["1000"], "Queries per search; several values (e.g. "
                              "1,10,100) run every case once per value, one table each.")
_SERVING = flags.DEFINE_integer("serving", 0, "If > 0: the serving benchmark, this many single "
                                "queries through a loaded index's search (see the docstring).")
_K = flags.DEFINE_integer("k", 10, "Neighbours per query.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed searches per (case, engine).")
_PROCESSES = flags.DEFINE_integer(
    "processes", 1, "Fresh worker processes per (case, engine), engines taking turns; the table "
    "reports each engine's best process and the ratio of the median process times too (FAISS's "
    "OpenMP run time varies between processes: 1.8 or 2.8 s at l2_1M_d128 on the same data).")
_CHUNK = flags.DEFINE_integer("chunk_size", None, "JAX kernels' chunk_size (default: auto).")
_SEED = flags.DEFINE_integer("seed", 0, "Data seed.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds allowed per (case, engine).")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: JSON job run in a subprocess.")


def _status_kib(field: str) -> int:
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> None:
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
  except OSError:
    pass  # older kernels: the peak then includes the set-up


def _make_data(metric: str, n: int, dim: int, q: int, seed: int):
  rng = np.random.default_rng(seed)
  if metric == "l2":
    return (rng.standard_normal((n, dim), np.float32), rng.standard_normal((q, dim), np.float32))
  words = dim // 32
  return (rng.integers(0, 2**32, (n, words), np.uint32),
          rng.integers(0, 2**32, (q, words), np.uint32))


def _serving_worker(job: dict) -> dict:
  """Loads a saved index once and answers single queries; latency percentiles and queries/s."""
  metric, dim, k, engine = job["metric"], job["dim"], job["k"], job["engine"]
  _, queries = _make_data(metric, 1, dim, job["serving"] + 5, job["seed"] + 1)
  if engine.startswith("faiss"):
    import faiss  # pylint: disable=import-outside-toplevel
    if engine == "faiss1":
      faiss.omp_set_num_threads(1)
    if metric == "l2":
      index = faiss.read_index(job["faiss_path"])
    else:
      from cbir_jax.kernels import to_faiss_bytes  # pylint: disable=import-outside-toplevel
      index = faiss.read_index_binary(job["faiss_path"])
      queries = to_faiss_bytes(queries, dim)
  else:
    from cbir_jax.index import load_index  # pylint: disable=import-outside-toplevel
    index = load_index(job["index_bf16_path" if engine == "jax_bf16" else "index_path"])
  times, answers = [], []
  for i in range(queries.shape[0]):
    start = time.perf_counter()
    d, ids = index.search(queries[i:i + 1], k)
    times.append(time.perf_counter() - start)
    answers.append((d, ids))
  times = np.array(times[5:])
  np.savez(job["result"], distances=np.concatenate([a[0] for a in answers[5:]]),
           indices=np.concatenate([a[1] for a in answers[5:]]))
  return {"p50_ms": float(np.percentile(times, 50) * 1e3),
          "p99_ms": float(np.percentile(times, 99) * 1e3), "qps": float(len(times) / times.sum()),
          "device": "cpu"}


def _read_bandwidth() -> float:
  """Plain read bandwidth, GB/s: the best of NumPy's max over a 512 MiB array (beyond any cache)
  on one thread and split over every core (np.max releases the GIL)."""
  import threading  # pylint: disable=import-outside-toplevel
  x = np.ones(2**27, np.float32)
  parts = np.array_split(x, os.cpu_count() or 1)
  best = float("inf")
  for threads in (1, len(parts)):
    for _ in range(5):
      start = time.perf_counter()
      if threads == 1:
        np.max(x)
      else:
        workers = [threading.Thread(target=np.max, args=(p,)) for p in parts]
        for w in workers:
          w.start()
        for w in workers:
          w.join()
      best = min(best, time.perf_counter() - start)
  return x.nbytes / best / 1e9


def _save_indexes(metric: str, n: int, dim: int, seed: int, folder: str) -> tuple[str, ...]:
  """The case's database as a cbir_jax index file, a FAISS index file and (L2) a cbir_jax
  FloatIndex with bfloat16 storage -> their paths."""
  import faiss  # pylint: disable=import-outside-toplevel
  from cbir_jax.index import BinaryIndex, FloatIndex  # pylint: disable=import-outside-toplevel
  from cbir_jax.kernels import to_faiss_bytes  # pylint: disable=import-outside-toplevel
  db, _ = _make_data(metric, n, dim, 1, seed)
  ours, theirs = os.path.join(folder, "index.cbiridx"), os.path.join(folder, "index.faiss")
  if metric == "l2":
    index, f_index = FloatIndex(dim), faiss.IndexFlatL2(dim)
    f_index.add(db)
    faiss.write_index(f_index, theirs)
  else:
    index, f_index = BinaryIndex(dim), faiss.IndexBinaryFlat(dim)
    f_index.add(to_faiss_bytes(db, dim))
    faiss.write_index_binary(f_index, theirs)
  index.add(db)
  index.save(ours)
  halved = os.path.join(folder, "index_bf16.cbiridx")
  if metric == "l2":
    index = FloatIndex(dim, storage="bfloat16")
    index.add(db)
    index.save(halved)
  return ours, theirs, halved


def _worker(job: dict) -> dict:
  """Runs one (case, engine) in this process and returns its measurements."""
  if job.get("serving"):
    return _serving_worker(job)
  metric, n, dim = job["metric"], job["n"], job["dim"]
  db, queries = _make_data(metric, n, dim, job["queries"], job["seed"])
  k, engine = job["k"], job["engine"]
  if engine in ("faiss", "faiss1"):
    import faiss  # pylint: disable=import-outside-toplevel
    if engine == "faiss1":
      faiss.omp_set_num_threads(1)
    from cbir_jax.kernels import to_faiss_bytes  # pylint: disable=import-outside-toplevel
    if metric == "l2":
      index = faiss.IndexFlatL2(dim)
      index.add(db)
    else:
      index = faiss.IndexBinaryFlat(dim)
      index.add(to_faiss_bytes(db, dim))
      queries = to_faiss_bytes(queries, dim)
    del db

    def search():
      return index.search(queries, k)
    device_peak = lambda: None  # noqa: E731
    device_name = "cpu"
  elif engine == "torch":
    search, device_peak, device_name = _torch_search(db, queries, k)
    del db
  else:
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    # pylint: disable-next=import-outside-toplevel
    from cbir_jax.kernels import euclidean_topk, hamming_topk
    db_dev, q_dev = jax.block_until_ready((jnp.array(db), jnp.array(queries)))
    if engine == "jax_bf16":
      from cbir_jax.kernels import half  # pylint: disable=import-outside-toplevel
      half_db = half.HalfDatabase.build(db)
      db_dev = half_db.full
    del db
    if engine == "jax_bf16":
      fn = lambda: half.half_topk(q_dev, half_db, k)  # noqa: E731
    elif engine in ("jax_naive", "jax_approx"):
      naive = jax.jit(_naive_l2, static_argnums=(2, 3))
      fn = lambda: naive(q_dev, db_dev, k, engine == "jax_approx")  # noqa: E731
    elif metric == "l2":
      method = "jax" if engine == "jax_pure" else "auto"
      fn = lambda: euclidean_topk(q_dev, db_dev, k, chunk_size=job["chunk_size"],  # noqa: E731
                                  method=method)
    else:
      method = {"jax_gemm": "gemm", "jax_pure": "popcount"}.get(engine, "auto")
      fn = lambda: hamming_topk(q_dev, db_dev, k, chunk_size=job["chunk_size"],  # noqa: E731
                                method=method)
    device = db_dev.devices().pop()
    device_name = device.platform

    def search():
      d, i = jax.block_until_ready(fn())
      return np.asarray(d), np.asarray(i)

    def device_peak():
      stats = device.memory_stats() if device.platform != "cpu" else None
      return stats and (stats["peak_bytes_in_use"], stats["bytes_in_use"])
  gc.collect()
  time.sleep(1.0)  # host->device copies release their staging memory asynchronously
  base_kib = _status_kib("VmRSS")
  device_base = device_peak()
  _reset_peak()
  start = time.perf_counter()
  distances, indices = search()
  first = time.perf_counter() - start
  first_peak_kib = _status_kib("VmHWM")
  steady_base_kib = _status_kib("VmRSS")
  _reset_peak()
  times, cpu = [], []
  for _ in range(job["repeats"]):
    start, start_cpu = time.perf_counter(), time.process_time()
    search()
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  peak_kib = max(_status_kib("VmHWM"), steady_base_kib)
  np.savez(job["result"], distances=distances, indices=indices)
  device_end = device_peak()
  out = {"first_s": first, "best_s": min(times), "median_s": float(np.median(times)),
         "cpu_s": float(cpu[int(np.argmin(times))]),
         "extra_mib": max(peak_kib - base_kib, 0) / 1024,
         "first_extra_mib": max(first_peak_kib - base_kib, 0) / 1024,
         "device": device_name}
  if device_base is not None:  # peak over the first and timed searches, beyond what was in use
    out["device_extra_mib"] = max(device_end[0] - device_base[1], 0) / 2**20
  return out


def _naive_l2(q, x, k: int, approx: bool):
  """What a JAX user writes: the whole (Q, N) squared-distance matrix, then its k smallest."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  d = (jnp.sum(q * q, axis=1)[:, None] + jnp.sum(x * x, axis=1)[None, :]
       - 2.0 * jnp.dot(q, x.T, precision="highest"))
  if approx:
    return jax.lax.approx_min_k(d, k, recall_target=0.95)
  neg, idx = jax.lax.top_k(-d, k)
  return -neg, idx


def _torch_search(db: np.ndarray, queries: np.ndarray, k: int):
  """(search, device_peak, device name) for PyTorch's exact L2 top-k on CUDA when present, else the CPU: the
  whole (Q, N) matrix by torch.mm in float32 (TF32 off, PyTorch's default), then torch.topk."""
  import torch  # pylint: disable=import-outside-toplevel
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cuda.matmul.allow_tf32 = False
  x = torch.from_numpy(db).to(dev)
  q = torch.from_numpy(queries).to(dev)

  def search():
    with torch.no_grad():
      d = torch.addmm((q * q).sum(1)[:, None] + (x * x).sum(1)[None, :], q, x.T, alpha=-2.0)
      vals, idx = torch.topk(d, k, dim=1, largest=False)
      return vals.cpu().numpy(), idx.cpu().numpy()

  def device_peak():
    if dev == "cpu":
      return None
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()  # first call: peak from here; later: read only
    return peak, torch.cuda.memory_allocated()

  return search, device_peak, dev


def _run_job(job: dict) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(job)}"]
  # On a GPU, JAX takes memory as it needs it, so its peak is what the search used.
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT.value, check=False,
                        env=env)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
  return json.loads(lines[-1][len("RESULT "):])


def main(argv) -> None:
  if _WORKER.value is not None:
    print("RESULT " + json.dumps(_worker(json.loads(_WORKER.value))))
    return
  if len(argv) > 1:
    launch.fail("benchmark search", f"unexpected arguments {argv[1:]}")
  for name in _CASES.value:
    if name not in CASES:
      launch.fail("benchmark search", f"unknown case {name!r}; choose from {list(CASES)}")
  for name in _ENGINES.value:
    if name not in ENGINES:
      launch.fail("benchmark search", f"unknown engine {name!r}; choose from {list(ENGINES)}")
  try:
    query_counts = [int(v) for v in _QUERIES.value]
  except ValueError:
    launch.fail("benchmark search", f"--queries must be integers, got {_QUERIES.value}")
  if not query_counts or min(query_counts) < 1:
    launch.fail("benchmark search", f"--queries must be >= 1, got {_QUERIES.value}")
  for flag in (_K, _REPEATS, _PROCESSES):
    if flag.value < 1:
      launch.fail("benchmark search", f"--{flag.name} must be >= 1, got {flag.value}")
  if _SERVING.value < 0:
    launch.fail("benchmark search", f"--serving must be >= 0, got {_SERVING.value}")
  bandwidth = _read_bandwidth()
  print(f"plain read bandwidth: {bandwidth:.1f} GB/s", flush=True)
  tables = []
  with tempfile.TemporaryDirectory() as tmp:
    for q in ([_SERVING.value] if _SERVING.value else query_counts):
      rows = []
      for name in _CASES.value:
        metric, n, dim = CASES[name]
        n = n // 10 if _QUICK.value else n
        if _K.value > n:
          launch.fail("benchmark search", f"--k={_K.value} exceeds N={n} for case {name}")
        paths = (_save_indexes(metric, n, dim, _SEED.value, tmp) if _SERVING.value
                 else (None, None, None))
        runs = {}
        for turn in range(_PROCESSES.value):
          for engine in _ENGINES.value:
            if ((engine, metric) == ("jax_gemm", "l2")
                or (engine in _L2_ONLY and metric == "hamming")
                or (_SERVING.value and engine not in _SERVING_ENGINES)):
              continue
            job = {"metric": metric, "n": n, "dim": dim, "queries": q,
                   "k": _K.value, "seed": _SEED.value, "engine": engine,
                   "repeats": _REPEATS.value, "chunk_size": _CHUNK.value,
                   "serving": _SERVING.value, "index_path": paths[0], "faiss_path": paths[1],
                   "index_bf16_path": paths[2],
                   "result": os.path.join(tmp, f"{name}-{engine}-{turn}.npz")}
            res = _run_job(job)
            if "error" not in res:
              with np.load(job["result"]) as saved:
                res["distances"], res["indices"] = saved["distances"], saved["indices"]
            runs.setdefault(engine, []).append(res)
            print(f"{name} Q={q} {engine} (process {turn + 1}/{_PROCESSES.value}): " + ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in res.items() if k not in ("distances", "indices")), flush=True)
        if _SERVING.value:
          results = {engine: _best_serving(res_list) for engine, res_list in runs.items()}
          rows.extend(_serving_rows(name, metric, n, results))
        else:
          results = {engine: _best_process(res_list) for engine, res_list in runs.items()}
          rows.extend(_rows(name, metric, n, dim, q, bandwidth, results))
      tables.append(_serving_table(rows, bandwidth) if _SERVING.value
                    else _table(rows, q, bandwidth))
  table = "\n".join(tables)
  print(table)
  if _OUT.value:
    with open(_OUT.value, "a", encoding="utf-8") as f:
      f.write(table + "\n")


def _best_serving(runs: list[dict]) -> dict:
  """The process with the highest queries/s; an error only when every process failed."""
  ok = [r for r in runs if "error" not in r]
  return max(ok, key=lambda r: r["qps"]) if ok else runs[-1]


def _serving_rows(name, metric, n, results):
  faiss_runs = [r for e, r in results.items() if e.startswith("faiss") and "error" not in r]
  base = max(faiss_runs, key=lambda r: r["qps"]) if faiss_runs else {}
  out = []
  for engine, res in results.items():
    if "error" in res:
      out.append(f"| {name} | {n:,} | {engine} | error: {res['error']} | | | | |")
      continue
    ratio, check = "", ""
    if not engine.startswith("faiss") and "distances" in base:
      ratio = f"{res['qps'] / base['qps']:.2f}x"
      check = common.check_results(metric, base, res)
    out.append(f"| {name} | {n:,} | {engine} | {res['p50_ms']:.3f} | {res['p99_ms']:.3f} | "
               f"{res['qps']:,.0f} | {ratio} | {check} |")
  return out


def _serving_table(rows, bandwidth) -> str:
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  head = (f"\nServing benchmark, {stamp}, {common.cpu_model()}, {os.cpu_count()} CPUs, a saved index "
          f"loaded once, {_SERVING.value} single queries through search(q[None], k), k={_K.value}, "
          f"best of {_PROCESSES.value} process(es) per engine; plain read bandwidth "
          f"{bandwidth:.1f} GB/s\n\n"
          "| case | N | engine | p50 ms | p99 ms | queries/s | vs FAISS | vs FAISS's results |\n"
          "|---|---|---|---|---|---|---|---|")
  return "\n".join([head] + rows)


def _best_process(runs: list[dict]) -> dict:
  """The process with the fastest search, with "median_process_s" (median over the processes'
  best times) added; an error only when every process failed."""
  ok = [r for r in runs if "error" not in r]
  if not ok:
    return runs[-1]
  best = dict(min(ok, key=lambda r: r["best_s"]))
  best["median_process_s"] = float(np.median([r["best_s"] for r in ok]))
  best["processes"] = len(ok)
  return best


def _rows(name, metric, n, dim, q, bandwidth, results):
  # Compare with the faster FAISS configuration that ran (all threads, or one thread).
  faiss_runs = [r for e, r in results.items() if e.startswith("faiss") and "error" not in r]
  base = min(faiss_runs, key=lambda r: r["best_s"]) if faiss_runs else {}
  db_bytes = n * dim * 4 if metric == "l2" else n * dim // 8
  limit = f"{q * bandwidth * 1e9 / db_bytes:,.0f}"
  out = []
  for engine, res in results.items():
    if "error" in res:
      out.append(f"| {name} | {n:,} | {engine} | | error: {res['error']} | | | | | | | | | |")
      continue
    qps = q / res["best_s"]
    rate = (2 * q * n * dim / res["best_s"] / 1e9 if metric == "l2"
            else q * n / res["best_s"] / 1e9)
    ratio, median_ratio, check = "", "", ""
    if not engine.startswith("faiss") and "distances" in base:
      ratio = f"{base['best_s'] / res['best_s']:.2f}x"
      faiss_median = min(r["median_process_s"] for r in faiss_runs)
      median_ratio = f"{faiss_median / res['median_process_s']:.2f}x"
      check = common.check_results(metric, base, res)
    unit = "GFLOP/s" if metric == "l2" else "Gdist/s"
    device_mib = f"{res['device_extra_mib']:,.0f}" if "device_extra_mib" in res else ""
    out.append(f"| {name} | {n:,} | {engine} | {res['device']} | {qps:,.0f} | {limit} | {ratio} | "
               f"{median_ratio} | {rate:.3g} {unit} | "
               f"{res['cpu_s']:.2f} | {res['extra_mib']:.0f} / {res['first_extra_mib']:.0f} | "
               f"{device_mib} | {res['first_s']:.2f} | {check} |")
  return out


def _table(rows, q, bandwidth) -> str:
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  head = (f"\nSearch benchmark, {stamp}, {common.cpu_model()}, {os.cpu_count()} CPUs"
          f"{_gpu_model()}, Q={q}, k={_K.value}, plain read bandwidth {bandwidth:.1f} GB/s, "
          f"best of {_REPEATS.value} "
          f"searches in each of {_PROCESSES.value} process(es) per engine"
          f"{', --quick (N / 10)' if _QUICK.value else ''}\n\n"
          "| case | N | engine | device | queries/s | read-bound limit q/s | vs FAISS | "
          "vs FAISS, median process | "
          "throughput | CPU s | host peak extra MiB steady / first | GPU peak extra MiB | "
          "first call s | vs FAISS's results |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  return "\n".join([head] + rows)


def _gpu_model() -> str:
  """", <name> GPU" from nvidia-smi when there is an NVIDIA GPU (no framework is started here)."""
  try:
    proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError):
    return ""
  names = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
  return f", {names[0].strip()} GPU" if names else ""


if __name__ == "__main__":
  from absl import app  # pylint: disable=import-outside-toplevel
  app.run(main)
