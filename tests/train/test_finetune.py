"""config.init_from: fine-tuning from imported weights (a torchvision-format AlexNet written here
with NumPy as .safetensors): trunk imported, head fresh, trunk frozen for N steps, the file's
preprocessing used for training and extraction, and its SHA-256 in every checkpoint."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cbir_jax import jobs
from cbir_jax.models import pretrained
from cbir_jax.train import checkpoint as checkpoint_lib
from cbir_jax.train import trainer
from tests import pretrained_files



def _meta(run_dir) -> dict:
  """The `meta` item of the newest checkpoint of a training run folder."""
  ckpt = checkpoint_lib.Checkpointer(str(run_dir / "checkpoints"), async_save=False,
                                     read_only=True)
  try:
    return ckpt.read_meta()
  finally:
    ckpt.close()


@pytest.mark.slow  # AlexNet at 227x227 and a 230 MB weights file: ~30 s on 2 cores
def test_init_from_imports_the_trunk_freezes_it_and_records_the_file(tmp_path, rng):
  weights = tmp_path / "alexnet.safetensors"
  pretrained_files.write_alexnet_safetensors(weights, rng)
  photos = tmp_path / "photos"
  for c in range(2):
    (photos / f"c{c}").mkdir(parents=True)
    for i in range(4):
      Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
          photos / f"c{c}" / f"{i}.png")
  c = ml_collections.ConfigDict({
      "seed": 0, "model": {"name": "alexnet", "kwargs": {}},
      "dataset": {"name": "image_folder", "manual_dir": str(photos),
                  "data_dir": str(tmp_path / "tfds"), "image_size": 227,
                  "train_split": "all", "eval_split": ""},
      "batch_size": 4, "eval_batch_size": 4, "num_steps": 2,
      "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
                    "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0},
      "label_smoothing": 0.0, "augment": False, "log_every_steps": 1, "eval_every_steps": -1,
      "checkpoint_every_steps": 2, "keep_checkpoints": 1, "distributed": "off",
      "init_from": str(weights), "init_from_model": "", "init_from_format": "",
      "freeze_trunk_steps": 5})
  result = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  imported = pretrained.load_pretrained(weights, "alexnet")
  params = jax.device_get(result.state.params)
  for layer in ("conv1", "conv5", "fc6", "fc7"):  # frozen for 5 steps: still the file's values
    for leaf, want in zip(jax.tree.leaves(params[layer]),
                          jax.tree.leaves(imported.variables["params"][layer])):
      np.testing.assert_array_equal(leaf, want)
  assert params["fc8"]["kernel"].shape == (4096, 2)  # a fresh 2-class head, trained
  assert not np.allclose(params["fc8"]["kernel"], 0)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert json.loads(saved["preprocessing"])["name"] == "torchvision"
  meta = _meta(tmp_path / "run")
  assert meta["init_from"]["sha256"] == imported.source["sha256"]
  assert meta["init_from"]["file"] == "alexnet.safetensors"
  run = jobs.restore(str(tmp_path / "run"))
  assert run.preprocessing == imported.preprocessing  # extraction uses the file's preprocessing


def test_freeze_for_zeroes_only_the_masked_updates_for_n_steps():
  import optax  # pylint: disable=import-outside-toplevel
  from cbir_jax.train import optim  # pylint: disable=import-outside-toplevel
  params = {"trunk": np.ones(3, np.float32), "head": np.ones(2, np.float32)}
  tx = optim.freeze_for(optax.sgd(1.0), {"trunk": True, "head": False}, 2)
  opt_state = tx.init(params)
  grads = {"trunk": np.ones(3, np.float32), "head": np.ones(2, np.float32)}
  seen = []
  for _ in range(3):
    updates, opt_state = tx.update(grads, opt_state, params)
    seen.append((float(updates["trunk"][0]), float(updates["head"][0])))
  assert seen == [(0.0, -1.0), (0.0, -1.0), (-1.0, -1.0)]
  with pytest.raises(ValueError, match="freeze steps must be an int >= 0, got -1"):
    optim.freeze_for(optax.sgd(1.0), {"trunk": True}, -1)


def test_init_from_one_of_our_runs_starts_from_its_selected_checkpoint(tmp_path):
  from tests.train.test_trainer import _config  # pylint: disable=import-outside-toplevel
  source_dir, target_dir = str(tmp_path / "source"), str(tmp_path / "target")
  source = _config()
  source.num_steps = 20
  trained = trainer.train_and_evaluate(source, source_dir)
  target = _config()
  target.num_steps = 8
  target.init_from = source_dir
  target.freeze_trunk_steps = 100
  result = trainer.train_and_evaluate(target, target_dir)
  before = jax.device_get(trained.state.params)
  after = jax.device_get(result.state.params)
  for layer in ("c1", "c3", "lk", "c5", "f6"):  # the trunk: the source's, frozen
    for got, want in zip(jax.tree.leaves(after[layer]), jax.tree.leaves(before[layer])):
      np.testing.assert_array_equal(got, want)
  assert not np.array_equal(after["output"]["kernel"], before["output"]["kernel"])  # fresh head
  meta = _meta(tmp_path / "target")
  assert meta["init_from"]["format"] == "cbir_jax"
  assert meta["init_from"]["file"].endswith("source@20") and len(meta["init_from"]["sha256"]) == 64
  assert "preprocessing" not in json.loads((tmp_path / "target" / "config.json").read_text())
  wrong = _config()
  wrong.model.name = "alexnet_tiny"
  wrong.model.kwargs = ml_collections.ConfigDict({"small_input": True})
  wrong.init_from = source_dir
  with pytest.raises(ValueError, match="holds a 'lenet_l' run, but 'alexnet_tiny' weights"):
    trainer.train_and_evaluate(wrong, str(tmp_path / "wrong"))
  (tmp_path / "empty").mkdir()
  target.init_from = str(tmp_path / "empty")
  with pytest.raises(ValueError, match="is a folder but not a training workdir"):
    trainer.train_and_evaluate(target, str(tmp_path / "other"))
