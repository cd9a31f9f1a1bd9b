"""bin/compare.py on a few-step configs/digits.py:tiny run, in subprocesses: tables, JSON, figure."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cbir_jax.eval import selection as compare
from cbir_jax.train import trainer

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BITS = (8, 16)


def _compare(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(REPO / "bin" / "compare.py"), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """configs/digits.py:tiny trained for 3 steps (no evaluation), in this process."""
  spec = importlib.util.spec_from_file_location("digits_config", REPO / "configs" / "digits.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("tiny")
  config.distributed = "off"
  config.num_steps = 3
  config.dataset.eval_split = ""
  config.checkpoint_every_steps = 3
  workdir = tmp_path_factory.mktemp("digits_tiny")
  trainer.train_and_evaluate(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def compared(run_dir, tmp_path_factory):
  """One bin/compare.py run that extracts f6 (84-d) from the run: (out folder, process)."""
  out = tmp_path_factory.mktemp("compare")
  proc = _compare(f"--train_workdir={run_dir}", "--endpoint=f6",
                  f"--bits={','.join(map(str, BITS))}", "--random_trials=2",
                  "--query_stride=3", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out, proc


def test_table_has_every_method_and_b(compared):
  out, proc = compared
  results = json.loads((out / "results.json").read_text())
  assert results["endpoint"] == "f6" and results["dimensions"] == 84
  assert results["model"] == "lenet_l" and results["dataset"] == "digits"
  rows = {(r["method"], r["bits"]) for r in results["rows"]}
  assert ("full_euclidean", 84) in rows
  for method in compare.DEFAULT_METHODS[1:]:
    for b in BITS:
      assert (method, b) in rows
  for row in results["rows"]:
    for key in ("map", "paper_map@10"):
      assert 0.0 <= row[key] <= 1.0, row
  # The stdout and results.md tables name every method and every b.
  markdown = (out / "results.md").read_text()
  for text in (proc.stdout, markdown):
    for method in compare.DEFAULT_METHODS:
      assert method in text
    for b in BITS:
      assert f"| {b} |" in text
  assert "bin/compare.py" in markdown and "map_vs_bits.png" in markdown
  with Image.open(out / "map_vs_bits.png") as im:
    assert im.format == "PNG"


def test_saved_features_give_the_same_rows(compared, tmp_path):
  out, _ = compared
  first = json.loads((out / "results.json").read_text())
  proc = _compare(f"--database_features={out / 'features' / 'train_f6.npy'}",
                  f"--query_features={out / 'features' / 'test_f6.npy'}",
                  f"--bits={','.join(map(str, BITS))}", "--random_trials=2", "--query_stride=3",
                  f"--out={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  again = json.loads((tmp_path / "results.json").read_text())
  assert again["rows"] == first["rows"]


@pytest.mark.parametrize("flag, message", [
    ("--bits=16,zero", "--bits must be comma-separated ints >= 1"),
    ("--random_trials=0", "--random_trials must be >= 1, got 0"),
    ("--query_split=train", "--database_split and --query_split must differ"),
])
def test_bad_flag_is_one_clear_line(run_dir, tmp_path, flag, message):
  proc = _compare(f"--train_workdir={run_dir}", "--endpoint=f6", f"--out={tmp_path}", flag)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("compare: ") and message in lines[-1], proc.stderr[-2000:]


def test_bits_wider_than_the_features_is_a_clear_error(compared, tmp_path):
  out, _ = compared
  proc = _compare(f"--database_features={out / 'features' / 'train_f6.npy'}",
                  f"--query_features={out / 'features' / 'test_f6.npy'}", "--bits=16,128",
                  f"--out={tmp_path}")
  assert proc.returncode == 2
  assert "bits [128] exceed the feature width d=84" in proc.stderr
