"""The main job end to end, as a user runs it: bin/demo.py in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, str(REPO / "bin" / "demo.py"), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def test_quick_demo_runs_end_to_end(tmp_path):
  workdir = tmp_path / "demo"
  proc = _demo(f"--workdir={workdir}", f"--config={REPO / 'configs' / 'demo.py'}:quick")
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "mAP@10" in out and "mAP (full)" in out
  assert "Euclidean" in out and "Hamming" in out
  assert str(workdir) in out  # says where its outputs are
  results = json.loads((workdir / "results.json").read_text())
  # A stratified 80/20 split of the 1,797 digits: queries are held out, never trained on.
  assert results["queries"] + results["database_size"] == 1797
  assert 355 <= results["queries"] <= 365
  for index in results["indexes"]:
    for key in ("paper_map@10", "paper_map@50", "map"):
      assert 0.0 <= index["metrics"][key] <= 1.0
    # Even one epoch of LeNet-L beats chance (0.1) by far on digits.
    assert index["metrics"]["paper_map@10"] > 0.3
  for name in ("contact_sheet_euclidean.png", "contact_sheet_hamming.png", "map_vs_k.png"):
    with Image.open(workdir / name) as im:
      assert im.format == "PNG"
  assert (workdir / "float.index").stat().st_size > 0
  assert (workdir / "binary.index").stat().st_size > 0


def test_unknown_dataset_is_a_clear_error(tmp_path):
  proc = _demo(f"--workdir={tmp_path}", "--dataset=imagenet_please")
  assert proc.returncode != 0
  assert "unknown dataset 'imagenet_please'" in proc.stderr
  assert "digits" in proc.stderr  # lists the valid names


def test_unknown_config_field_is_a_clear_error(tmp_path):
  proc = _demo(f"--workdir={tmp_path}", "--config.retreival.endpoint=f6")
  assert proc.returncode != 0
  assert "retreival" in proc.stderr


def test_dataset_without_manual_dir_is_a_clear_error(tmp_path):
  proc = _demo(f"--workdir={tmp_path}", "--dataset=corel1k")
  assert proc.returncode != 0
  assert "manual_dir" in proc.stderr


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  if os.geteuid() == 0:
    target = "/proc/cbir_demo_workdir"  # not creatable even by root
  else:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = str(locked / "w")
  proc = _demo(f"--workdir={target}")
  assert proc.returncode != 0
  assert "--workdir" in proc.stderr and "cbir_demo_workdir" in proc.stderr or "locked" in proc.stderr
