"""bin/benchmark.py train: bad flags are one line on stderr and exit status 2 (nothing is run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

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


def test_bad_warmup_is_one_line():
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "train",
                         "--warmup=-1"], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "--warmup must be >= 0, got -1" in proc.stderr


def test_rounds_time_only_the_steps_after_warmup():
  from cbir_jax._bin.benchmarks import common
  calls = []

  def step():
    calls.append(None)
    if len(calls) <= 2:  # the two warm-up steps are slow, the timed ones fast
      import time
      time.sleep(0.2)

  seconds = common.time_steps(step, 3, 2)
  assert len(calls) == 5 and seconds < 0.15


def test_quick_run_with_torch(tmp_path):
  pytest.importorskip("torch", reason="the train benchmark's peer needs torch "
                      "(pip install -e '.[bench]'); CI does not install it")
  out = tmp_path / "table.md"
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "train",
                         "--cases=lenet_l@32x32", "--steps=1", "--repeats=2", "--warmup=1",
                         "--threads=1", f"--out={out}"], cwd=REPO,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = out.read_text()
  assert "--warmup=1" in text and "after 1 untimed step(s)" in text
  row = [line for line in text.splitlines() if line.startswith("| lenet_l@32x32")]
  assert len(row) == 1 and float(row[0].split("|")[5].strip()[:-1]) > 0


def test_gpu_without_a_gpu_is_one_line():
  pytest.importorskip("torch", reason="the train benchmark checks for torch before the GPU")
  proc = subprocess.run([sys.executable, str(REPO / "bin" / "benchmark.py"), "train",
                         "--device=gpu", "--cases=lenet_l@32x32", "--steps=1", "--repeats=1",
                         "--threads=1"], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("benchmark train: jax worker: ")
  assert "gpu" in lines[0]
