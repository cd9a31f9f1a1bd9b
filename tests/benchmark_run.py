"""Runs a bin/benchmark.py suite in a fresh CPU-only process, for the benchmark suites' tests."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_suite(suite: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  """`python bin/benchmark.py <suite> <args>` with JAX_PLATFORMS=cpu; output captured."""
  return subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), suite, *args],
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=timeout)
