"""`cifar10_schemes:gpu` end to end on CPU, as on the GPU machine: no tensorflow, no install."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from cbir_jax.data import packed
from tests.data.test_packed import CLASSES, NO_TF, tiny_cifar_tree

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_scale_end_to_end_without_tensorflow(tmp_path):
  """bin/gpu_reproduce.py runs `cifar10_schemes:gpu` (full MobileNetV2 and its DFS-Net, bfloat16,
  the packed data) at --quick's steps and subsets, with tensorflow and tfds unimportable, and
  writes the experiment's results (about 3.5 minutes on 2 shared CPU cores)."""
  root = tmp_path / "cifar10"
  tiny_cifar_tree(root, per_class_train=30, per_class_test=8)
  packed.pack(packed.collect_cifar10(root), tmp_path / "packed", class_names=CLASSES)
  workdir = tmp_path / "work"
  argv = ["bin/gpu_reproduce.py",
          f"--experiment=cifar10_schemes:gpu,families=mobilenet_v2,data={tmp_path / 'packed'}",
          "--quick", f"--workdir={workdir}"]
  code = NO_TF + (f"sys.argv = {argv!r}\n"
                   "import runpy\n"
                   "runpy.run_path('bin/gpu_reproduce.py', run_name='__main__')\n")
  env = dict(os.environ, CBIR_JAX_MALLOC_TUNING="0", PYTHONUNBUFFERED="1")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "cifar10_schemes (gpu (quick) scale) finished" in result.stdout
  payload = json.loads((workdir / "results.json").read_text())
  model = payload["config"]["models"]["dfs_mobilenet_v2"]
  assert model["model"]["name"] == "dfs_mobilenet_v2"
  assert model["model"]["kwargs"] == {"small_input": True, "dtype": "bfloat16"}
  assert model["dataset"]["name"] == "cifar10_packed"
  assert set(payload["rows"]) == {"mobilenet_v2"}
  assert 0 <= payload["rows"]["mobilenet_v2"]["scheme 3 map"] <= 1
  assert (workdir / "train" / "mobilenet_v2" / "metrics.jsonl").stat().st_size > 0


@pytest.mark.slow
def test_pack_dataset_launcher_checks_the_budget_first(tmp_path):
  """bin/pack_dataset.py: what travels beside the data is counted before any image is read; over
  the budget it exits 2 naming the sizes and writes nothing; within it, it packs and reports."""
  root = tmp_path / "cifar10"
  tiny_cifar_tree(root)
  (tmp_path / "wheels").mkdir()
  (tmp_path / "wheels" / "a.whl").write_bytes(b"w" * 300_000)
  out = tmp_path / "packed"

  def pack(*flags):
    return subprocess.run([sys.executable, "bin/pack_dataset.py", f"--manual_dir={root}",
                           f"--out={out}", *flags], cwd=REPO, capture_output=True, text=True,
                          timeout=300)

  full = pack("--budget_mib=0.1", f"--travel_with={tmp_path / 'wheels'}")
  assert full.returncode == 2
  assert "pack_dataset: what travels beside the data (repository " in full.stderr
  assert "already fills the 0.1 MiB budget" in full.stderr
  over = pack("--budget_mib=0.29", "--nocount_repo", f"--travel_with={tmp_path / 'wheels'}")
  assert over.returncode == 2 and "over the budget of 0.29 MiB; nothing was written" in over.stderr
  assert not out.exists()
  ok = pack("--budget_mib=1", "--nocount_repo", f"--travel_with={tmp_path / 'wheels'}")
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "packed 24 train, 10 test images" in ok.stdout and "of the 1 MiB budget" in ok.stdout
  assert sorted(p.name for p in out.iterdir()) == [packed.DATA_FILE, packed.INDEX_FILE]
