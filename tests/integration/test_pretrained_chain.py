"""Imported weights through the whole chain: a torchvision-format AlexNet file (random, written
here with NumPy as .safetensors) -> fc8 features -> AL fused with a trained LeNet-L's F6 ->
index -> search by image, on real Corel-1K photos."""

import pathlib
import shutil

import ml_collections
import numpy as np
import pytest

from cbir_jax import config_util, jobs, query
from cbir_jax.train import trainer
from tests import pretrained_files

pytestmark = pytest.mark.data



@pytest.fixture
def photos(tmp_path):
  corel = config_util.shared_dataset("corel1k")
  if not corel:
    pytest.skip(f"Corel-1K not found under {config_util.shared_datasets_root()} (set "
                "CBIR_SHARED_DATASETS to its folder)")
  corel = pathlib.Path(corel)
  root = tmp_path / "photos"
  for name, first in (("buses", 300), ("dinosaurs", 400), ("horses", 700)):
    (root / name).mkdir(parents=True)
    for i in range(first, first + 4):
      shutil.copy(corel / name / f"{i}.jpg", root / name / f"{i}.jpg")
  return root


def test_imported_alexnet_fc8_fused_with_f6_is_searchable_by_image(photos, tmp_path, rng):
  weights = tmp_path / "alexnet.safetensors"
  pretrained_files.write_alexnet_safetensors(weights, rng)
  dataset = ml_collections.ConfigDict({"name": "image_folder", "manual_dir": str(photos),
                                       "data_dir": str(tmp_path / "tfds"), "image_size": 227,
                                       "train_split": "train"})

  c = ml_collections.ConfigDict({  # A LeNet-L trained for two steps on the same photos.
      "seed": 0, "model": {"name": "lenet_l", "kwargs": {"lk_features": 16}},
      "dataset": dataset.to_dict(), "batch_size": 4, "eval_batch_size": 4, "num_steps": 2,
      "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": False,
                    "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0},
      "label_smoothing": 0.0, "augment": False, "log_every_steps": 1, "eval_every_steps": -1,
      "checkpoint_every_steps": 2, "keep_checkpoints": 1, "distributed": "off"})
  with c.unlocked():
    c.dataset.eval_split = ""
  trainer.train_and_evaluate(c, str(tmp_path / "lenet"))

  alexnet = jobs.import_weights(str(weights), "alexnet")
  assert alexnet.weights["framework"] == "torchvision" and alexnet.preprocessing is not None
  fc8 = jobs.extract_split(alexnet, "all", "fc8", str(tmp_path / "f" / "fc8.npy"), batch_size=4,
                           dataset=dataset)
  f6 = jobs.extract_split(jobs.restore(str(tmp_path / "lenet")), "all", "f6",
                          str(tmp_path / "f" / "f6.npy"), batch_size=4, dataset=dataset)
  assert fc8.features.shape == (12, 1000) and f6.features.shape == (12, 84)
  index = jobs.build_index([str(tmp_path / "f" / "f6.npy"), str(tmp_path / "f" / "fc8.npy")],
                           str(tmp_path / "al.index"), fusion="l2")
  record = index.metadata["provenance"]
  assert [s["model"] for s in record["sources"]] == ["lenet_l", "alexnet"]
  assert record["sources"][1]["weights"]["sha256"] == alexnet.weights["sha256"]
  assert record["sources"][1]["preprocessing"]["name"] == "torchvision"

  searcher = query.ImageSearcher.open(str(tmp_path / "al.index"), batch_size=4)
  photo = photos / "dinosaurs" / "402.jpg"
  distances, ids = searcher.search(searcher.decode(photo.read_bytes())[None], 3)
  position = list(f6.ids).index(ids[0, 0])
  assert searcher.labels(ids)[0, 0] == searcher.class_names.index("dinosaurs")
  np.testing.assert_array_equal(searcher.labels(np.array([-1, ids[0, 0]])),  # -1: missing hit
                                [-1, searcher.class_names.index("dinosaurs")])
  assert distances[0, 0] <= 1e-4 and position == list(f6.ids).index(ids[0, 0])
  np.testing.assert_allclose(searcher.features(searcher.decode(photo.read_bytes())[None])[0, 84:],
                             fc8.features[position] / np.linalg.norm(fc8.features[position]),
                             rtol=1e-4, atol=1e-6)
