"""The main job end to end, as a user runs it: bin/demo.py in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, str(REPO / "bin" / "demo.py"), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
  """One quick demo run shared by this module's tests: (workdir, completed process)."""
  workdir = tmp_path_factory.mktemp("demo") / "run"
  proc = _demo(f"--workdir={workdir}", f"--config={REPO / 'configs' / 'demo.py'}:quick")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def _search(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(REPO / "bin" / "search.py"), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def test_quick_demo_runs_end_to_end(quick_demo):
  workdir, proc = quick_demo
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
  assert "unknown data set 'imagenet_please'" in proc.stderr
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


def test_search_by_image_folder(quick_demo, tmp_path):
  """A folder of photos (grey PNG, CMYK JPEG, RGBA PNG, a corrupt file) against both indexes."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  folder = tmp_path / "photos"
  folder.mkdir()
  grey = lambda row: Image.fromarray((digits.images[row] * 255 / 16).astype("uint8"))
  grey(0).resize((48, 48)).save(folder / "zero.png")
  grey(3).convert("CMYK").save(folder / "three_cmyk.jpg")
  grey(7).convert("RGBA").save(folder / "seven_rgba.png")
  (folder / "broken.jpg").write_bytes(b"not a jpeg")
  (folder / "notes.txt").write_text("ignored: not an image")
  workdir, _ = quick_demo
  for index in ("float.index", "binary.index"):
    out = tmp_path / index
    proc = _search(f"--index={workdir / index}", f"--query={folder}", "--k=5", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 1 unreadable file(s)" in proc.stdout and "broken.jpg" in proc.stdout
    ranking = json.loads((out / "ranking.json").read_text())
    assert sorted({r["query"] for r in ranking["results"]}) == sorted(
        str(folder / f) for f in ("zero.png", "three_cmyk.jpg", "seven_rgba.png"))
    assert len(ranking["results"]) == 15
    for q in {r["query"] for r in ranking["results"]}:
      ranks = [r for r in ranking["results"] if r["query"] == q]
      assert [r["rank"] for r in ranks] == [1, 2, 3, 4, 5]
      assert all(a["distance"] <= b["distance"] for a, b in zip(ranks, ranks[1:]))
    # Query "three" is digits row 3 itself, stored in the database only if row 3 is a
    # database row; either way its nearest neighbour must be very close in feature space.
    csv_lines = (out / "ranking.csv").read_text().splitlines()
    assert csv_lines[0] == "query,rank,id,distance,label,class" and len(csv_lines) == 16
    with Image.open(out / "contact_sheet.png") as im:
      assert im.format == "PNG"


def test_search_errors_are_clear(quick_demo, tmp_path):
  workdir, _ = quick_demo
  index = workdir / "float.index"
  proc = _search(f"--index={index}", f"--query={tmp_path / 'missing.jpg'}")
  assert proc.returncode != 0 and "missing.jpg" in proc.stderr and "does not exist" in proc.stderr
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = _search(f"--index={index}", f"--query={empty}")
  assert proc.returncode != 0 and "holds no image files" in proc.stderr
  photo = tmp_path / "p.png"
  Image.new("L", (8, 8), 128).save(photo)
  proc = _search(f"--index={index}", f"--query={photo}", "--k=100000")
  assert proc.returncode != 0 and "k must be in [1, " in proc.stderr and "100000" in proc.stderr
  bad = tmp_path / "zero.index"
  bad.write_bytes(b"")
  proc = _search(f"--index={bad}", f"--query={photo}")
  assert proc.returncode != 0 and "zero.index" in proc.stderr


@pytest.mark.parametrize("size", ["-1", "0"])
def test_bad_image_size_fails_before_training(tmp_path, size):
  """image_size has one spelling for native size (None in a config file); -1 / 0 are rejected
  before any work, naming the value (they used to train, then crash)."""
  workdir = tmp_path / "run"
  proc = _demo(f"--workdir={workdir}", f"--config={REPO / 'configs' / 'demo.py'}:quick",
               f"--config.dataset.image_size={size}")
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert f"dataset.image_size must be None (native size), a positive int or (height, width), " \
         f"got {size}" in last, last
  assert not workdir.exists()
