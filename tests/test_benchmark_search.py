"""bin/benchmark.py search: a small run end to end (table, checks against FAISS) and bad flags."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "search", *args],
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=timeout)


def test_quick_run_with_two_processes_per_engine(tmp_path):
  out = tmp_path / "table.md"
  proc = _run("--quick", "--cases=l2_100k_d128,ham64_100k", "--engines=faiss,jax,jax_pure",
              "--processes=2", "--repeats=1", "--queries=50", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  # jax_pure (the pure-JAX L2 kernel) runs for the L2 case only.
  assert proc.stdout.count("(process 2/2)") == 5
  rows = [line for line in out.read_text().splitlines() if line.startswith("| l2_") or
          line.startswith("| ham")]
  assert len(rows) == 5
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 11, row
    if cells[2] in ("jax", "jax_pure"):
      assert cells[10] == "equal", row  # distances equal to FAISS
      assert cells[4].endswith("x") and cells[5].endswith("x"), row  # both ratios
      assert float(cells[4][:-1]) > 0 and float(cells[5][:-1]) > 0


@pytest.mark.parametrize("flag,message", [
    ("--processes=0", "--processes must be >= 1"), ("--cases=l2_7", "unknown case 'l2_7'"),
    ("--engines=annoy", "unknown engine 'annoy'")])
def test_bad_flag_is_one_line(flag, message):
  proc = _run(flag, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("benchmark search: ") and message in lines[0]
