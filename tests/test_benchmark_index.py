"""bin/benchmark.py index: bad flags fail in one line; a tiny run measures both frameworks."""

import importlib.util
import os

import pytest

from tests import benchmark_run

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow


def _run(*flags: str):
  return benchmark_run.run_suite("index", *flags, timeout=300)


@pytest.mark.parametrize("flag,message", [
    ("--num_images=10", "--num_images must be >= 100"), ("--workers=0", "--workers must be >= 1"),
    ("--side=8", "--side must be >= 16"), ("--frameworks=tf", "unknown ['tf']")])
def test_bad_flag_is_one_line(flag, message):
  proc = _run(flag)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("benchmark index: ") and message in lines[0]


def test_tiny_run_measures_both(tmp_path):
  # The PyTorch side needs torch and torchvision (`pip install -e '.[bench]'`), which CI does
  # not install. Looked up, not imported: torch is only ever loaded in the benchmark's process.
  missing = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]
  if missing:
    pytest.skip(f"the index benchmark's PyTorch peer needs {' and '.join(missing)} "
                "(pip install -e '.[bench]'); CI does not install it")
  proc = _run("--num_images=200", f"--cache_dir={tmp_path}", "--batch_size=32", "--workers=1",
              "--lk_features=16", f"--out={tmp_path / 'table.md'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = (tmp_path / "table.md").read_text()
  assert "| cbir_jax | 200 |" in table and "| pytorch | 200 | " in table, table
  assert (tmp_path / "200x64" / ".complete").exists()
  assert sum(len(files) for _, _, files in os.walk(tmp_path / "200x64")) == 201
