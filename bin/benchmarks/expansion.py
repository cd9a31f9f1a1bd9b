"""Re-ranking benchmark: cbir_jax's alpha-QE / DBA kernels vs FAISS search + NumPy weighting.

  python bin/benchmark.py expansion                    # the default cases (about a minute)
  python bin/benchmark.py expansion --quick            # N / 10, seconds
  python bin/benchmark.py expansion --cases=dba_100k_d256 --k=5 --alpha=3 --out=docs/BENCHMARKS.md

What a user would otherwise write for database-side augmentation (DBA) and alpha query
expansion: L2-normalise with NumPy, find each row's k nearest database rows with FAISS
(IndexFlatIP on the unit vectors: the same ranking as Euclidean on them), then the weighted sum
sum_i max(s_i, 0)**alpha * x_{n_i} in NumPy (plus the query itself for alpha-QE) and normalise
again. Ours is one jitted call, `cbir_jax.kernels.database_augmentation` /
`alpha_query_expansion`, on the streaming Euclidean top-k. Both engines get the same seeded
float32 data in the same process (a clustered set, so neighbours mean something); FAISS runs
first with all its OpenMP threads. The table gives the best of --repeats timed calls (JAX's first
call, which compiles, is reported apart), the ratio, and how far the outputs agree: the largest
absolute difference over rows, and how many rows differ by more than 1e-4 anywhere (a row
differs only when a float32 near-tie puts a different k-th neighbour in its sum).
"""

import datetime
import os
import time

from absl import flags
import numpy as np

from cbir_jax._bin import launch
from cbir_jax._bin.benchmarks import common

# name -> (kind, database rows, dim, queries); DBA re-describes the database by itself.
CASES = {
    "dba_20k_d256": ("dba", 20_000, 256, 0),
    "dba_100k_d256": ("dba", 100_000, 256, 0),
    "qe_100k_d256_q1000": ("qe", 100_000, 256, 1000),
    "qe_1M_d128_q100": ("qe", 1_000_000, 128, 100),
}
ENGINES = ("faiss_numpy", "jax")

_CASES = flags.DEFINE_list("cases", ["dba_20k_d256", "qe_100k_d256_q1000"],
                           f"Cases to run, from {list(CASES)}.")
_K = flags.DEFINE_integer("k", 5, "Neighbours per row (DBA: including the row itself).")
_ALPHA = flags.DEFINE_float("alpha", 3.0, "Weight exponent (3: Radenovic et al.).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per (case, engine).")
_QUICK = flags.DEFINE_bool("quick", False, "Divide every N by 10.")
_SEED = flags.DEFINE_integer("seed", 0, "Data seed.")
_OUT = flags.DEFINE_string("out", "", "If set, append the Markdown table to this file.")


def make_data(n: int, dim: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Seeded float32 (database, queries) drawn around n // 50 random centres."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((max(n // 50, 1), dim)).astype(np.float32)
  db = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal(
      (n, dim)).astype(np.float32)
  queries = centres[rng.integers(0, len(centres), q)] + 0.5 * rng.standard_normal(
      (q, dim)).astype(np.float32)
  return db, queries


def _unit(x: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def faiss_numpy(kind: str, db: np.ndarray, queries: np.ndarray, k: int,
                alpha: float) -> np.ndarray:
  """The FAISS + NumPy baseline: unit rows, IndexFlatIP top-k, weighted sum, unit rows."""
  import faiss  # pylint: disable=import-outside-toplevel

  x = np.ascontiguousarray(_unit(db), dtype=np.float32)
  q = x if kind == "dba" else np.ascontiguousarray(_unit(queries), dtype=np.float32)
  index = faiss.IndexFlatIP(x.shape[1])
  index.add(x)
  sims, ids = index.search(q, k)
  w = np.maximum(sims, 0.0) ** alpha
  out = np.zeros_like(q) if kind == "dba" else q.copy()
  for i in range(k):               # one neighbour rank at a time: O(q * d) extra memory
    out += w[:, i:i + 1] * x[ids[:, i]]
  return _unit(out)


def jax_expansion(kind: str, db, queries, k: int, alpha: float) -> np.ndarray:
  """cbir_jax's kernel for `kind`, blocked until done."""
  from cbir_jax import kernels  # pylint: disable=import-outside-toplevel

  if kind == "dba":
    out = kernels.database_augmentation(db, k, alpha=alpha)
  else:
    out = kernels.alpha_query_expansion(queries, db, k, alpha=alpha)
  return np.asarray(out.block_until_ready())


def agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
  """(largest absolute difference, number of rows that differ by more than 1e-4)."""
  if got.size == 0:
    return 0.0, 0
  per_row = np.max(np.abs(got.astype(np.float64) - want), axis=1)
  return float(per_row.max()), int(np.sum(per_row > 1e-4))


def run_case(kind: str, n: int, dim: int, q: int, k: int, alpha: float, repeats: int,
             seed: int) -> dict:
  """Times both engines on one case; returns seconds, the JAX first call and the agreement."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  db, queries = make_data(n, dim, q, seed)
  out = {}
  want = None
  for engine in ENGINES:
    if engine == "faiss_numpy":
      call = lambda: faiss_numpy(kind, db, queries, k, alpha)  # noqa: E731
    else:
      db_dev, q_dev = jnp.asarray(db), jnp.asarray(queries)
      call = lambda: jax_expansion(kind, db_dev, q_dev, k, alpha)  # noqa: E731
      start = time.perf_counter()
      call()
      out["jax_first_s"] = time.perf_counter() - start
    times = []
    for _ in range(repeats):  # The timed calls' own output is what gets checked.
      start = time.perf_counter()
      result = call()
      times.append(time.perf_counter() - start)
    out[f"{engine}_s"] = min(times)
    if engine == "faiss_numpy":
      want = result
    else:
      out["max_abs_diff"], out["rows_differing"] = agreement(result, want)
  return out


def main(argv) -> None:
  if len(argv) > 1:
    launch.fail("benchmark expansion", f"unexpected arguments {argv[1:]}")
  for name in _CASES.value:
    if name not in CASES:
      launch.fail("benchmark expansion", f"unknown case {name!r}; choose from {list(CASES)}")
  for flag in (_K, _REPEATS):
    if flag.value < 1:
      launch.fail("benchmark expansion", f"--{flag.name} must be >= 1, got {flag.value}")
  if not 0 <= _ALPHA.value < float("inf"):
    launch.fail("benchmark expansion", f"--alpha must be a finite number >= 0, got {_ALPHA.value}")
  rows = []
  for name in _CASES.value:
    kind, n, dim, q = CASES[name]
    n = n // 10 if _QUICK.value else n
    if _K.value > n:
      launch.fail("benchmark expansion", f"--k={_K.value} exceeds N={n} for case {name}")
    res = run_case(kind, n, dim, q, _K.value, _ALPHA.value, _REPEATS.value, _SEED.value)
    print(f"{name}: " + ", ".join(f"{key}={val:.4g}" for key, val in res.items()), flush=True)
    rows.append(f"| {name} | {n:,} | {dim} | {q or n:,} | {_K.value} | {res['faiss_numpy_s']:.3f} "
                f"| {res['jax_s']:.3f} | {res['faiss_numpy_s'] / res['jax_s']:.2f}x "
                f"| {res['jax_first_s']:.2f} | {res['max_abs_diff']:.1e} "
                f"| {res['rows_differing']:,} |")
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  table = "\n".join([
      f"Re-ranking kernels, {stamp}, {common.cpu_model()}, {os.cpu_count()} CPUs, "
      f"alpha={_ALPHA.value:g}, best of {_REPEATS.value}:",
      "",
      "| case | N | dim | rows expanded | k | FAISS + NumPy s | cbir_jax s | vs FAISS + NumPy "
      "| cbir_jax first call s | max abs diff | rows differing (> 1e-4) |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, ""])
  print(table)
  if _OUT.value:
    with open(_OUT.value, "a", encoding="utf-8") as f:
      f.write(table + "\n")

