"""bin/extract.py on a 1-step digits run and bin/hash.py on its features, in subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from cbir_jax.data import datasets, input_pipeline
from cbir_jax.features import hashing, igr
from cbir_jax.train import trainer

REPO = Path(__file__).resolve().parents[2]


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(REPO / "bin" / script), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "off"
  c.dataset = ml_collections.ConfigDict({"name": "digits", "manual_dir": "", "image_size": 16,
                                         "train_split": "train", "eval_split": ""})
  c.model = ml_collections.ConfigDict({"name": "lenet_l", "kwargs": {"lk_features": 8}})
  c.batch_size = 32
  c.num_epochs = -1
  c.num_steps = 1
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "momentum": 0.9,
      "schedule": "constant", "warmup_steps": 0, "grad_clip_norm": 0.0})
  c.label_smoothing = 0.0
  c.augment = False
  c.log_every_steps = 1
  c.eval_every_steps = -1
  c.checkpoint_every_steps = 1
  c.keep_checkpoints = 1
  workdir = tmp_path_factory.mktemp("run")
  trainer.train_and_evaluate(c, str(workdir))
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
  with np.load(tmp_path / "h" / "hash_state.npz") as state:
    np.testing.assert_array_equal(state["selection_order"], order)
    again = hashing.MeanThresholdHasher.from_state(
        {k[len("hasher_"):]: state[k] for k in state.files if k.startswith("hasher_")})
  np.testing.assert_array_equal(again.transform(igr.select(feats[:5], order, 40)), db_codes[:5])
  meta = json.loads((tmp_path / "h" / "hash.json").read_text())
  assert meta["bits"] == 40 and meta["features_metadata"]["endpoint"] == "c5"

  proc = _launch("hash.py", f"--database={out}", "--bits=121", f"--out_dir={tmp_path / 'h'}")
  assert proc.returncode == 2 and "--bits must be in [1, 120]" in proc.stderr


def test_extract_bad_endpoint(run_dir, tmp_path):
  proc = _launch("extract.py", f"--workdir={run_dir}", "--split=test", "--endpoint=fc7",
                 f"--out={tmp_path / 'x.npy'}")
  assert proc.returncode == 2 and "valid: lk, c5, f6" in proc.stderr
  assert not os.listdir(tmp_path)
