"""Times whole-ranking evaluation scored on the device against the host path, on synthetic data.

  python bin/gpu_eval_check.py --queries=2000 --database=50000 --dim=256 --classes=10
  python bin/gpu_eval_check.py --index=binary --bits=256 --protocol=database --database=20000

Runs from a checkout without an install (the repository root goes on sys.path), so a lent GPU
machine can measure it in seconds. Builds random features (or random codes for --index=binary)
with random labels, then times `protocol.evaluate_search` over `ranking.full_ranking_search`
with device_scoring=True (each chunk's distance block ranked and scored on the device,
`eval.device_scoring`) and device_scoring=False (the ranked ids copied to the host and scored in
NumPy: on a CPU NumPy's stable sort, on an accelerator the index's top-k kernels). Each path runs
--repeats times; the first device run includes compilation. Prints one line per run and the
largest difference between the two paths' metrics and curves.

Measured on the shared 2-core CPU (load ~8, 2026-11-28), 2,000 x 50,000, 10 classes, warm runs:
FloatIndex 256-d, device 18.9 s, host 15.2 s; BinaryIndex 256 bits (--index=binary), device
14.8 s, host 8.9 s; metrics 5e-10 apart, curves 2e-15. Not yet measured on an accelerator.
"""

import os
import sys
import time

from absl import app, flags

_QUERIES = flags.DEFINE_integer("queries", 2000, "Held-out queries (protocol heldout).")
_DATABASE = flags.DEFINE_integer("database", 50000, "Database size n.")
_DIM = flags.DEFINE_integer("dim", 256, "Feature dimension (--index=float).")
_BITS = flags.DEFINE_integer("bits", 256, "Code length (--index=binary), a multiple of 32.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Number of classes of the random labels.")
_INDEX = flags.DEFINE_enum("index", "float", ["float", "binary"], "FloatIndex or BinaryIndex.")
_PROTOCOL = flags.DEFINE_enum("protocol", "heldout", ["heldout", "database"],
                              "heldout: --queries separate queries; database: every database "
                              "item queries the rest.")
_PATHS = flags.DEFINE_list("paths", ["device", "host"], "Paths to time: device, host.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per path.")
_CHUNK = flags.DEFINE_integer("query_chunk", None,
                             "Queries per chunk (default: evaluate_search's).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic data.")


def main(argv) -> None:
  del argv
  bad = [p for p in _PATHS.value if p not in ("device", "host")]
  if bad:
    print(f"--paths takes device and host, got {bad}")
    sys.exit(2)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cbir_jax.eval import protocol, ranking  # pylint: disable=g-import-not-at-top
  from cbir_jax.index import BinaryIndex, FloatIndex  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(_SEED.value)
  n, nq = _DATABASE.value, _QUERIES.value
  if _INDEX.value == "float":
    index = FloatIndex(_DIM.value)
    data = rng.normal(size=(n + nq, _DIM.value)).astype(np.float32)
  else:
    index = BinaryIndex(_BITS.value)
    data = rng.integers(0, 2**32, size=(n + nq, _BITS.value // 32), dtype=np.uint32)
  labels = rng.integers(0, _CLASSES.value, size=n + nq)
  index.add(data[:n])
  if _PROTOCOL.value == "heldout":
    queries, query_labels = data[n:], labels[n:]
  else:
    queries, query_labels = data[:n], labels[:n]
  search = ranking.full_ranking_search(index)
  print(f"backend {jax.default_backend()} {jax.devices()[0].device_kind}: {_INDEX.value} index, "
        f"{len(queries)} queries x {n} database, protocol {_PROTOCOL.value}")
  results = {}
  for path in _PATHS.value:
    for run in range(_REPEATS.value):
      start = time.perf_counter()
      results[path] = protocol.evaluate_search(
          path, search, queries, query_labels, labels[:n], protocol=_PROTOCOL.value,
          ks=(10, 50, 100), query_chunk=_CHUNK.value, device_scoring=path == "device")
      seconds = time.perf_counter() - start
      print(f"{path} run {run + 1}: {seconds:.2f} s (map {results[path].metrics['map']:.6f})",
            flush=True)
  if len(results) == 2:
    a, b = results["device"], results["host"]
    diff = max(abs(a.metrics[k] - b.metrics[k]) for k in a.metrics)
    curves = max(float(np.abs(a.pr_precision - b.pr_precision).max()),
                 float(np.abs(a.pr_recall - b.pr_recall).max()))
    print(f"largest difference device - host: metrics {diff:.2e}, curves {curves:.2e}")


if __name__ == "__main__":
  app.run(main)
