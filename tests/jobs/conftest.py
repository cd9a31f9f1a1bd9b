"""Fixtures of the jobs tests: a one-step LeNet-L run and a small photo folder with a bad file."""

import ml_collections
import pytest

from cbir_jax.train import trainer
from tests.photo_files import make_photos


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A LeNet-L (K = 8) run of one step on digits at 16x16 (input (16, 16, 1))."""
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


@pytest.fixture
def photos(tmp_path):
  """39 readable JPEGs, 13 per class, and the unreadable c1/bad.jpg (40 files)."""
  return make_photos(tmp_path / "photos", 13)
