"""bin/benchmark.py train: bad flags are one line on stderr and exit status 2 (nothing is run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flag,message", [
    ("--cases=foo", "bad case 'foo'"), ("--cases=alexnet@axb", "<h>x<w>"),
    ("--steps=0", "--steps must be >= 1"), ("--threads=100000", "--threads=100000")])
def test_bad_flag_is_one_line(flag, message):
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "train", flag],
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("benchmark train: ") and message in lines[0]
