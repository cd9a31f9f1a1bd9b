"""Benchmarks: `python bin/benchmark.py <suite> [--flags]`; suites live in bin/benchmarks/.

Suites: search (kernels vs FAISS), expansion (alpha-QE / DBA kernels vs FAISS + NumPy), models
(forward images/s, GFLOPs), train (training images/s vs PyTorch), serve (the search service vs a
process per query), index (a JPEG folder streamed into an index vs torchvision ImageFolder +
DataLoader). Each suite module defines its own absl flags and a `main(argv)`; results are printed
as a Markdown table and, with --out, appended to a file (docs/BENCHMARKS.md by convention).
"""

import importlib
import sys

from absl import app

from cbir_jax._bin import launch

SUITES = ("search", "expansion", "models", "train", "serve", "index")


def run() -> None:
  """Console-script entry point: picks the suite from argv[1] and hands it the rest."""
  launch.ensure_malloc_tuning()
  if len(sys.argv) < 2 or sys.argv[1] not in SUITES:
    got = sys.argv[1] if len(sys.argv) > 1 else "nothing"
    print(f"usage: benchmark.py {{{'|'.join(SUITES)}}} [--flags]; got {got!r}", file=sys.stderr)
    sys.exit(2)
  suite = importlib.import_module(f"cbir_jax._bin.benchmarks.{sys.argv[1]}")
  app.run(suite.main, argv=[f"{sys.argv[0]} {sys.argv[1]}"] + sys.argv[2:])


if __name__ == "__main__":
  run()
