"""The file launchers in subprocesses: extract, hash, and the whole CLI chain to search by image."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbir_jax.data import datasets, input_pipeline
from cbir_jax.features import encoder as encoder_lib
from cbir_jax.features import hashing, igr
from cbir_jax.train import trainer
from tests.tiny_run import train_tiny_lenet

# Launches subprocesses (launchers, fresh interpreters): `pytest -m "not slow"` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(REPO / "bin" / script), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train_tiny_lenet(workdir)
  return workdir


def test_extract_then_hash(run_dir, tmp_path):
  out = tmp_path / "feats" / "q.npy"
  proc = _launch("extract.py", f"--workdir={run_dir}", "--split=test", "--endpoint=c5",
                 f"--out={out}", "--batch_size=100")
  assert proc.returncode == 0, proc.stderr[-3000:]
  meta = json.loads((tmp_path / "feats" / "q.json").read_text())
  assert meta["checkpoint_step"] == 1 and meta["endpoint"] == "c5"
  assert meta["dataset"] == "digits" and meta["split"] == "test" and meta["model"] == "lenet_l"
  feats = np.load(out)
  model, variables, _ = trainer.restore(str(run_dir))
  queries = datasets.load_arrays("digits", "test", image_size=16, seed=0)
  _, values = model.apply(variables, input_pipeline.normalize(queries.images), features=("c5",))
  np.testing.assert_allclose(feats, values["c5"], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.load(tmp_path / "feats" / "q.labels.npy"), queries.labels)
  np.testing.assert_array_equal(np.load(tmp_path / "feats" / "q.ids.npy"), queries.ids)

  # Hash with the test split as "database" and its first rows as queries.
  np.save(tmp_path / "feats" / "few.npy", feats[:5])
  proc = _launch("hash.py", f"--database={out}", f"--queries={tmp_path / 'feats' / 'few.npy'}",
                 "--bits=40", f"--out_dir={tmp_path / 'h'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  order = igr.rank_features(feats, queries.labels)
  hasher = hashing.MeanThresholdHasher().fit(igr.select(feats, order, 40))
  db_codes = np.load(tmp_path / "h" / "q_codes.npy")
  np.testing.assert_array_equal(db_codes, hasher.transform(igr.select(feats, order, 40)))
  np.testing.assert_array_equal(np.load(tmp_path / "h" / "few_codes.npy"), db_codes[:5])
  state = json.loads((tmp_path / "h" / "encoder.json").read_text())
  again = encoder_lib.HashEncoder.from_state(state)
  assert again.kept_dimensions.tolist() == order[:40].tolist()
  np.testing.assert_array_equal(again.encode(feats[:5]), db_codes[:5])
  sidecar = json.loads((tmp_path / "h" / "q_codes.json").read_text())
  assert sidecar["provenance"]["encoder"] == state and sidecar["endpoint"] == "c5"
  assert sidecar["provenance"]["sources"][0]["endpoint"] == "c5"
  np.testing.assert_array_equal(np.load(tmp_path / "h" / "q_codes.labels.npy"), queries.labels)

  proc = _launch("hash.py", f"--database={out}", "--bits=121", f"--out_dir={tmp_path / 'h'}")
  assert proc.returncode == 2 and "bits must be in [1, 120]" in proc.stderr


def test_extract_bad_endpoint(run_dir, tmp_path):
  proc = _launch("extract.py", f"--workdir={run_dir}", "--split=test", "--endpoint=fc7",
                 f"--out={tmp_path / 'x.npy'}")
  assert proc.returncode == 2 and "valid: lk, c5, f6" in proc.stderr
  assert not os.listdir(tmp_path)


def test_cli_chain_is_searchable_by_image(tmp_path):
  """cbir-train -> cbir-extract -> cbir-hash -> cbir-index build -> cbir-search --query=photo."""
  folder = tmp_path / "photos"
  rng = np.random.default_rng(7)
  for c, color in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 210)]):
    (folder / f"class{c}").mkdir(parents=True)
    for i in range(8):
      pixels = np.clip(np.array(color) + rng.normal(0, 25, (20, 24, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(folder / f"class{c}" / f"{i}.png")
  run = tmp_path / "run"
  proc = _launch("train.py", "--config=" + str(REPO / "configs" / "digits.py") + ":tiny",
                 f"--workdir={run}", "--config.dataset.name=image_folder",
                 f"--config.dataset.manual_dir={folder}", f"--config.dataset.data_dir={tmp_path}/tfds",
                 "--config.dataset.image_size=16", "--config.num_steps=2", "--config.batch_size=8",
                 "--config.eval_batch_size=8")
  assert proc.returncode == 0, proc.stderr[-3000:]
  feats = tmp_path / "f"
  for split in ("train", "test"):
    proc = _launch("extract.py", f"--workdir={run}", f"--split={split}", "--endpoint=f6",
                   f"--out={feats / split}.npy", "--batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
  proc = _launch("hash.py", f"--database={feats / 'train.npy'}", f"--queries={feats / 'test.npy'}",
                 "--bits=32", f"--out_dir={tmp_path / 'h'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name, source in (("float", feats / "train.npy"), ("binary", tmp_path / "h" / "train_codes.npy")):
    proc = _launch("index.py", "build", f"--features={source}", f"--out={tmp_path / name}.index")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no provenance" not in proc.stdout
    photo = folder / "class1" / "0.png"
    proc = _launch("search.py", f"--index={tmp_path / name}.index", f"--query={photo}", "--k=3",
                   f"--out={tmp_path / name}_search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranking = json.loads((tmp_path / f"{name}_search" / "ranking.json").read_text())
    assert len(ranking["results"]) == 3 and ranking["results"][0]["class"].startswith("class")
  # Bare vectors: no provenance, and search by image says what is missing.
  np.save(tmp_path / "bare.npy", np.load(feats / "train.npy"))
  proc = _launch("index.py", "build", f"--features={tmp_path / 'bare.npy'}",
                 f"--out={tmp_path / 'bare.index'}")
  assert proc.returncode == 0 and "no provenance record" in proc.stdout
  proc = _launch("search.py", f"--index={tmp_path / 'bare.index'}", f"--query={photo}")
  assert proc.returncode != 0 and "records no provenance" in proc.stderr
