"""Every training config builds, validates, and its model accepts the config's input size."""

import importlib.util
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from cbir_jax.train import trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FAMILIES = ("resnet50", "inception_v3", "mobilenet_v2", "dfs_resnet50", "dfs_inception_v3",
            "dfs_mobilenet_v2")
DATASETS = {"digits.py": "digits", "lenet_l_corel1k.py": "corel1k",
            "alexnet_corel1k.py": "corel1k", "cifar10.py": "cifar10_local",
            "caltech256.py": "caltech256"}
CASES = ([("digits.py", a) for a in ("", "tiny")]
         + [(f, a) for f in ("lenet_l_corel1k.py", "alexnet_corel1k.py") for a in ("", "cpu")]
         + [(f, f"model={m}{c}") for f in ("cifar10.py", "caltech256.py") for m in FAMILIES
            for c in ("", ",cpu", ",tiny")])


def _load(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(name[:-3], CONFIGS / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("name, arg", CASES)
def test_config_validates(name, arg):
  config = _load(name, arg)
  trainer.validate_config(config)
  assert config.dataset.name == DATASETS[name]
  if "model=" in arg:
    family = arg.split("=")[1].split(",")[0]
    if arg.endswith("cpu") and name == "cifar10.py":  # the CPU-scale variants
      assert config.model.name == family.replace("resnet50", "resnet") + "_cpu"
    elif arg.endswith("cpu") or arg.endswith("tiny"):  # caltech256's "cpu" = its alias "tiny"
      assert config.model.name.endswith("_tiny")
    else:
      assert config.model.name == family


@pytest.mark.parametrize("name, arg", [(n, a) for n, a in CASES if a.endswith("cpu")
                                       or a.endswith("tiny")])
def test_cpu_model_accepts_the_config_input(name, arg):
  config = _load(name, arg)
  size = config.dataset.image_size
  h, w = (size, size) if isinstance(size, int) else tuple(size)
  channels = 1 if config.dataset.name == "digits" else 3
  model = trainer.build_model(config, 10)
  out = jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x, train=False),
                       jnp.zeros((2, h, w, channels)))
  assert "params" in out


@pytest.mark.parametrize("bad", ["model=vgg16", "tpu", "model=resnet50,cpu,fast"])
def test_bad_config_argument_names_it(bad):
  with pytest.raises(ValueError, match=bad.split(",")[-1]):
    _load("cifar10.py", bad)


@pytest.mark.parametrize("arg, model, size", [("", "alexnet", 64),
                                              ("model=lenet_l", "lenet_l", (64, 96)),
                                              ("model=alexnet,size=131,epochs=2", "alexnet", 131),
                                              ("model=lenet_l,size=32x48", "lenet_l", (32, 48))])
def test_cifar10_pretrain_config_decides_on_validation(arg, model, size):
  config = _load("cifar10_pretrain.py", arg)
  trainer.validate_config(config)
  assert config.model.name == model and config.dataset.name == "cifar10_local"
  got = config.dataset.image_size
  assert (got if isinstance(got, int) else tuple(got)) == size
  assert config.dataset.eval_split == "validation" and config.dataset.test_split == "test"
  assert config.checkpoint_selection == "best" and config.dataset.validation_fraction == 0.1
  with pytest.raises(ValueError, match="got 'size=0'"):
    _load("cifar10_pretrain.py", "size=0")


def test_corel_heldout_variants_reach_both_networks(tmp_path):
  config = _load_experiment("corel_heldout.py", f"small,aug=strong,epochs=40,"
                            f"alexnet_init={tmp_path / 'a'},lenet_init={tmp_path / 'l'}")
  alexnet, lenet = config.models.alexnet, config.models.lenet_lk1400
  assert alexnet.init_from == str(tmp_path / "a") and lenet.init_from == str(tmp_path / "l")
  for m in (alexnet, lenet):
    assert m.augment and m.augment_policy == "strong" and m.num_epochs == 40
    assert m.dataset.eval_split == "validation" and m.dataset.test_split == "query"
    trainer.check_selection(m)
  with pytest.raises(ValueError, match="got 'aug=weak'"):
    _load_experiment("corel_heldout.py", "small,aug=weak")


def test_corel_heldout_patience_option():
  # The paper-size default is the validated winner (whole budget); small keeps 6.
  default = _load_experiment("corel_heldout.py", "cpu,data=/x")
  p6 = _load_experiment("corel_heldout.py", "cpu,data=/x,patience=6")
  small = _load_experiment("corel_heldout.py", "small,data=/x")
  assert default.early_stopping_patience == 0 and p6.early_stopping_patience == 6
  assert small.early_stopping_patience == 6
  for tag in ("alexnet", "lenet_lk1400"):
    assert p6.models[tag].early_stopping_patience == 6
    assert small.models[tag].early_stopping_patience == 6
    m = default.models[tag]
    # The whole epoch budget, and still the checkpoint best on validation.
    assert m.early_stopping_patience == 0 and m.checkpoint_selection == "best"
    assert m.num_epochs == 30 and m.dataset.eval_split == "validation"
    trainer.check_selection(m)
  with pytest.raises(ValueError, match="got 'patience=x'"):
    _load_experiment("corel_heldout.py", "cpu,patience=x")
  with pytest.raises(ValueError, match="patience= is for corel_heldout"):
    _load_experiment("corel_paper.py", "cpu,patience=0")


def test_corel_heldout_expansion_option():
  default = _load_experiment("corel_heldout.py", "cpu,data=/x")
  assert tuple(default.expansion.dba_k) == (0, 2, 3, 5)
  assert tuple(default.expansion.qe_k) == (0, 1, 2, 3, 5)
  assert default.expansion.alpha == 3.0
  off = _load_experiment("corel_heldout.py", "cpu,data=/x,expansion=off")
  assert tuple(off.expansion.dba_k) == (0,) and tuple(off.expansion.qe_k) == (0,)
  # Nothing else changes.
  assert off.models.to_dict() == default.models.to_dict()
  with pytest.raises(ValueError, match="got 'expansion=on'"):
    _load_experiment("corel_heldout.py", "cpu,expansion=on")
  with pytest.raises(ValueError, match="expansion= is for corel_heldout"):
    _load_experiment("corel_paper.py", "cpu,expansion=off")


def test_corel_recipe_options_set_the_networks_optimizers():
  default = _load_experiment("corel_heldout.py", "cpu,data=/x")
  both = _load_experiment("corel_heldout.py", "cpu,data=/x,alexnet_recipe=adam_1e-4,lenet_lr=1e-3")
  alex = both.models.alexnet.optimizer
  assert (alex.name, alex.learning_rate, alex.weight_decay, alex.schedule) == (
      "adam", 1e-4, 0.0, "cosine")
  assert both.models.lenet_lk1400.optimizer.learning_rate == 1e-3
  # Nothing else changes.
  for tag, keys in (("alexnet", ("name", "learning_rate", "weight_decay", "schedule")),
                    ("lenet_lk1400", ("learning_rate",))):
    a, b = default.models[tag].to_dict(), both.models[tag].to_dict()
    for key in keys:
      a["optimizer"].pop(key)
      b["optimizer"].pop(key)
    assert a == b
  # sgd_step names the paper's SGD recipe explicitly, whatever the config's default is.
  sgd = _load_experiment("corel_paper.py", "cpu,data=/x,alexnet_recipe=sgd_step").models.alexnet
  assert (sgd.optimizer.name, sgd.optimizer.learning_rate, sgd.optimizer.weight_decay,
          sgd.optimizer.schedule, tuple(sgd.optimizer.decay_boundaries),
          sgd.optimizer.warmup_fraction) == ("sgd", 0.01, 5e-4, "step", (1 / 3, 2 / 3), 0.05)
  # The default is the recipe measured best at the paper's sizes (Adam 1e-4 + cosine).
  adam = _load_experiment("corel_paper.py", "cpu,data=/x,alexnet_recipe=adam_1e-4")
  assert adam.models.alexnet.optimizer.to_dict() == default.models.alexnet.optimizer.to_dict()
  paper = _load_experiment("corel_paper.py", "cpu,data=/x,lenet_lr=5e-4")
  assert all(m.optimizer.learning_rate == 5e-4 for t, m in paper.models.items() if t != "alexnet")
  for bad in ("alexnet_recipe=rmsprop", "lenet_lr=0", "lenet_lr=1e-3+2e-3", "lenet_lr=x"):
    with pytest.raises(ValueError, match=re.escape(f"got {bad!r}")):
      _load_experiment("corel_heldout.py", f"cpu,{bad}")
  # With pretrain=cifar10 the recipe options apply to the pretraining runs too.
  pre = _load_experiment("corel_heldout.py", "small,data=/x,pretrain=cifar10,"
                                             "alexnet_recipe=adam_3e-4,lenet_lr=1e-3")
  assert pre.pretrain.alexnet.optimizer.to_dict() == pre.models.alexnet.optimizer.to_dict()
  assert (pre.pretrain.alexnet.optimizer.name, pre.pretrain.alexnet.optimizer.learning_rate) == (
      "adam", 3e-4)
  assert pre.pretrain.lenet_lk1400.optimizer.learning_rate == 1e-3
  assert pre.pretrain.lenet_lk1400.dataset.name == "cifar10_local"


def _load_experiment(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(name[:-3], CONFIGS / "experiments" / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
