"""bin/train.py as a user runs it: a one-epoch smoke run on digits and clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DIGITS_TINY = f"--config={REPO / 'configs' / 'digits.py'}:tiny"


def _train(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(REPO / "bin" / "train.py"), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_one_epoch_on_digits(tmp_path):
  workdir = tmp_path / "run"
  proc = _train(DIGITS_TINY, f"--workdir={workdir}", "--config.dataset.image_size=16",
                "--config.batch_size=128", "--config.model.kwargs.lk_features=24")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "trained lenet_l on digits for 11 steps" in proc.stdout  # 1437 // 128 = 11.
  assert "eval_accuracy" in proc.stdout
  assert f"outputs in {workdir}" in proc.stdout
  for name in ("config.json", "metrics.jsonl", "checkpoints/11"):
    assert (workdir / name).exists(), name
  # The --config.* overrides are what the run recorded.
  recorded = json.loads((workdir / "config.json").read_text())
  assert recorded["dataset"]["image_size"] == 16 and recorded["model"]["kwargs"] == {"lk_features": 24}
  meta = json.loads((workdir / "checkpoints" / "11" / "meta" / "metadata").read_text())
  assert meta["model_kwargs"] == {"lk_features": 24}  # the paper's K reached the model


def test_unknown_config_field_is_a_clear_error(tmp_path):
  proc = _train(DIGITS_TINY, f"--workdir={tmp_path / 'run'}", "--config.optimiser.name=sgd")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("train: bad --config: 'optimiser'") and "optimizer" in last
  assert not (tmp_path / "run").exists()


def test_missing_config_file_is_a_clear_error(tmp_path):
  proc = _train(f"--config={tmp_path / 'nope.py'}", f"--workdir={tmp_path / 'run'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert str(tmp_path / "nope.py") in proc.stderr.strip().splitlines()[-1]


def test_unknown_model_is_one_clear_line(tmp_path):
  proc = _train(DIGITS_TINY, f"--workdir={tmp_path}", "--config.model.name=lenet9")
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("train: bad --config: unknown model 'lenet9'") and "lenet_l" in last
  assert "Traceback" not in proc.stderr


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  proc = _train(DIGITS_TINY, f"--workdir={blocker / 'run'}")
  assert proc.returncode == 2
  assert f"cannot create --workdir {blocker / 'run'}" in proc.stderr
