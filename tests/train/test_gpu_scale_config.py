"""The GPU scale of configs/cifar10.py and configs/experiments/cifar10_schemes.py."""

from pathlib import Path

import pytest

from cbir_jax import config_util
from cbir_jax.train import trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELS = ("resnet50", "inception_v3", "mobilenet_v2", "dfs_resnet50", "dfs_inception_v3",
          "dfs_mobilenet_v2")


def _load(relpath: str):
  return config_util.load_sibling(str(CONFIGS / "anchor.py"), relpath)


@pytest.mark.parametrize("model", MODELS)
def test_gpu_config_validates_with_the_full_model_in_bfloat16(model):
  config = _load("cifar10.py").get_config(f"model={model},gpu")
  trainer.validate_config(config)  # builds the model from the "bfloat16" name, checks 32x32
  assert config.model.name == model
  assert dict(config.model.kwargs) == {"small_input": True, "dtype": "bfloat16"}
  assert config.dataset.name == "cifar10_packed" and config.dataset.train_split == "train"
  assert config.batch_size == 512 and config.num_epochs == 6 and config.num_steps == -1
  assert config.optimizer.learning_rate == 0.4 and config.optimizer.warmup_fraction == 0.15
  assert trainer.build_model(config, 10).dtype.__name__ == "bfloat16"


def test_schemes_gpu_scale_and_epochs():
  schemes = _load("experiments/cifar10_schemes.py")
  c = schemes.get_config("gpu,epochs=3,families=resnet50,data=/packed")
  assert c.scale == "gpu" and c.dataset.name == "cifar10_packed"
  assert c.dataset.manual_dir == "/packed" and set(c.models) == {"resnet50", "dfs_resnet50"}
  for m in c.models.values():
    assert m.num_epochs == 3 and m.dataset.manual_dir == "/packed"
    assert m.dataset.validation_fraction == 0.1 and m.dataset.name == "cifar10_packed"
  assert (c.retrieval.num_database, c.retrieval.num_queries) == (-1, -1)
  assert (c.retrieval.num_validation, c.retrieval.sweep_queries) == (1000, 2000)
  assert tuple(c.retrieval.selection_bits) == (32, 128)
  assert c.extract_batch_size == 1000
  quick = schemes.get_config("gpu,quick,families=mobilenet_v2")
  assert quick.scale == "gpu (quick)" and quick.retrieval.num_database == 200
  assert quick.models.mobilenet_v2.num_steps == 2
  assert quick.models.mobilenet_v2.model.name == "mobilenet_v2"  # full model, quick sizes
  assert schemes.get_config("cpu").models.resnet50.model.name == "resnet_cpu"  # unchanged


@pytest.mark.parametrize("arg, match", [("tiny,epochs=3", "'epochs=3' is for the cpu, gpu and "
                                                         "paper scales"),
                                        ("gpu,epochs=0", "got 'epochs=0'"),
                                        ("gpu,epochs=x", "got 'epochs=x'"),
                                        ("tiny,peak=0.4", "'peak=0.4' is for the cpu, gpu and "
                                                          "paper scales"),
                                        ("cpu,peak=0", "got 'peak=0'"),
                                        ("cpu,peak=-1", "got 'peak=-1'"),
                                        ("cpu,peak=fast", "got 'peak=fast'")])
def test_schemes_bad_epochs_are_named(arg, match):
  with pytest.raises(ValueError, match=match):
    _load("experiments/cifar10_schemes.py").get_config(arg)


def test_schemes_epochs_set_every_network_at_cpu_scale():
  schemes = _load("experiments/cifar10_schemes.py")
  c = schemes.get_config("cpu,epochs=30,families=inception_v3")
  assert sorted(c.models) == ["dfs_inception_v3", "inception_v3"]
  assert all(m.num_epochs == 30 and m.num_steps == -1 for m in c.models.values())
  assert all(m.num_epochs == 8 for m in schemes.get_config("cpu").models.values())


def test_schemes_peak_sets_every_network_and_keeps_the_rest_of_the_recipe():
  schemes = _load("experiments/cifar10_schemes.py")
  training = _load("cifar10.py")
  base = schemes.get_config("cpu,epochs=30,families=inception_v3")
  c = schemes.get_config("cpu,epochs=30,families=inception_v3,peak=0.3")
  own = training.CPU_PEAK["inception_v3"]
  assert own != 0.3
  assert all(m.optimizer.learning_rate == own for m in base.models.values())
  for tag, m in c.models.items():
    assert m.optimizer.learning_rate == 0.3
    m.optimizer.learning_rate = own
    assert m.to_json(sort_keys=True) == base.models[tag].to_json(sort_keys=True)


def test_cpu_scale_peak_is_per_family_and_shared_by_its_dfs_net():
  training = _load("cifar10.py")
  assert set(training.CPU_PEAK) == {"resnet50", "inception_v3", "mobilenet_v2"}
  for family, peak in training.CPU_PEAK.items():
    for model in (family, "dfs_" + family):
      assert training.get_config(f"model={model},cpu").optimizer.learning_rate == peak
  # Other scales keep their recipes.
  assert training.get_config("model=resnet50,gpu").optimizer.learning_rate == 0.4
  assert training.get_config("model=resnet50").optimizer.learning_rate == 0.1
