"""cbir_jax.config_util: the shared data location and loading sibling configs by path."""

from pathlib import Path

import pytest

from cbir_jax import config_util

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shared_dataset_follows_the_environment(tmp_path, monkeypatch):
  (tmp_path / "corel1k").mkdir()
  monkeypatch.setenv(config_util.SHARED_DATASETS_ENV, str(tmp_path))
  assert config_util.shared_datasets_root() == tmp_path
  assert config_util.shared_dataset("corel1k") == str(tmp_path / "corel1k")
  assert config_util.shared_dataset("cifar10") == ""  # absent -> ""


def test_default_root_is_beside_the_checkout(monkeypatch):
  monkeypatch.delenv(config_util.SHARED_DATASETS_ENV, raising=False)
  assert config_util.shared_datasets_root() == CONFIGS.parents[1] / "shared" / "datasets"


@pytest.mark.parametrize("config,arg,folder", [
    ("lenet_l_corel1k.py", "cpu", "corel1k"), ("alexnet_corel1k.py", "", "corel1k"),
    ("cifar10.py", "model=resnet50,cpu", "cifar10"),
    ("experiments/corel_paper.py", "cpu", "corel1k"),
    ("experiments/cifar10_schemes.py", "cpu", "cifar10")])
def test_configs_resolve_their_data_through_it(config, arg, folder, tmp_path, monkeypatch):
  (tmp_path / folder).mkdir()
  monkeypatch.setenv(config_util.SHARED_DATASETS_ENV, str(tmp_path))
  module = config_util.load_sibling(str(CONFIGS / "x.py"), config)
  assert module.get_config(arg).dataset.manual_dir == str(tmp_path / folder)


def test_load_sibling_names_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py"):
    config_util.load_sibling(str(tmp_path / "a.py"), "nope.py")


@pytest.mark.parametrize("text, rates", [
    ("0.1", (0.1,)), ("0.05+0.1+0.2", (0.05, 0.1, 0.2)), ("1e-3+3e-4", (1e-3, 3e-4)),
    ("0", ()), ("-0.1", ()), ("nan", ()), ("inf", ()), ("0.1+0.1", ()), ("0.1+", ()),
    ("abc", ()), ("", ())])
def test_positive_rates_parses_distinct_finite_positive_numbers(text, rates):
  assert config_util.positive_rates(text) == pytest.approx(rates)
