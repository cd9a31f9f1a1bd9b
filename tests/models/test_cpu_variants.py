"""The CPU-scale variants of the seed-002 families: same blocks, narrower, stride-2 stems."""

import jax
import jax.numpy as jnp
import pytest

from cbir_jax import config_util
from cbir_jax.models import inception, registry, resnet

# name -> (parameters at 10 classes, pooled backbone width, top-level block counts)
VARIANTS = {
    "resnet_cpu": (509_594, 512, {"BottleneckBlock": 4}),
    "inception_v3_cpu": (344_678, 256, {"InceptionA": 3, "InceptionB": 1, "InceptionC": 4,
                                        "InceptionD": 1, "InceptionE": 2}),
    "mobilenet_v2_cpu": (700_490, 1280, {"InvertedResidual": 17}),
}
DFS = {"dfs_resnet_cpu": ("resnet_cpu", 978_202), "dfs_inception_v3_cpu": ("inception_v3_cpu",
                                                                          462_246),
       "dfs_mobilenet_v2_cpu": ("mobilenet_v2_cpu", 3_623_050)}


def _shapes(name):
  model = registry.get_model(name, num_classes=10)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  _, feats = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3)),
                                                  features=registry.endpoints(name)), variables)
  return variables["params"], {k: v.shape for k, v in feats.items()}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_backbone_blocks_widths_and_final_map(name):
  count, width, blocks = VARIANTS[name]
  params, feats = _shapes(name)
  assert sum(p.size for p in jax.tree.leaves(params)) == count
  assert feats == {"pool": (2, width)}
  for block, n in blocks.items():
    assert sum(k.startswith(block + "_") for k in params) == n, block
  # 32x32 -> a 2x2 last map: the global pool still averages 4 positions (the size guard's rule).
  check = registry.check_input_size(name, 32, warn=False)
  assert check.last_map == (2, 2) and check.meaningful
  # One pixel less per side is where the map drops to 1x1 (docs/MODELS.md's table: 31 and 17).
  below = 30 if name.startswith("inception") else 16
  assert not registry.check_input_size(name, below, warn=False).meaningful


@pytest.mark.parametrize("name", sorted(DFS))
def test_dfs_net_is_the_backbone_plus_the_fig2_module(name):
  backbone, count = DFS[name]
  params, feats = _shapes(name)
  assert sum(p.size for p in jax.tree.leaves(params)) == count
  width = VARIANTS[backbone][1]
  assert feats == {"pool": (2, width), "dfs": (2, width)}  # DFS feature as wide as the pool
  assert {"compress", "branch1x3", "branch3x1", "branch3x3_3x1", "branch3x3_1x3"} <= set(
      params["dfs"])
  assert registry.check_input_size(name, 32, warn=False).last_map == (2, 2)


def test_stem_stride_is_checked_by_name():
  x = jnp.zeros((1, 32, 32, 3))
  for module in (resnet.ResNet(10, stage_sizes=(1,), num_filters=4, stem_stride=2),
                 inception.InceptionV3(10, width=1 / 16, stem_stride=2)):
    with pytest.raises(ValueError, match="stem_stride=2, small_input=False"):
      module.init(jax.random.key(0), jnp.zeros((1, 96, 96, 3)))
  with pytest.raises(ValueError, match="stem_stride=3"):
    resnet.ResNet(10, stage_sizes=(1,), small_input=True, stem_stride=3).init(
        jax.random.key(0), x)
  assert inception.inception_min_size(True, 2) == 23
  with pytest.raises(ValueError, match="at least 23x23"):
    registry.get_model("inception_v3_cpu", num_classes=3).init(jax.random.key(0),
                                                               jnp.zeros((1, 22, 22, 3)))


def test_cifar10_config_scales():
  cfg = config_util.load_sibling(__file__, "../../configs/cifar10.py")
  cpu = cfg.get_config("model=dfs_mobilenet_v2,cpu")
  assert cpu.model.name == "dfs_mobilenet_v2_cpu" and dict(cpu.model.kwargs) == {}
  assert cpu.dataset.train_split == "train" and cpu.num_epochs == 8 and cpu.num_steps == -1
  assert cpu.optimizer.warmup_fraction == 0.15 and cpu.optimizer.warmup_steps == 0
  tiny = cfg.get_config("model=resnet50,tiny")
  assert tiny.model.name == "resnet_tiny" and tiny.dataset.train_split == "train_batches"
  assert cfg.get_config("").model.name == "resnet50"
  with pytest.raises(ValueError, match="'tiny'"):
    cfg.get_config("model=resnet50,cpu,tiny")


def test_schemes_v1_token_adds_the_v1_layout_dfs_nets():
  exp = config_util.load_sibling(__file__, "../../configs/experiments/cifar10_schemes.py")
  c = exp.get_config("cpu,families=inception_v3,v1")
  assert sorted(c.models) == ["dfs_inception_v3", "dfs_inception_v3_v1", "inception_v3"]
  assert c.models.dfs_inception_v3_v1.model.kwargs.layout == "v1"
  assert "layout" not in c.models.dfs_inception_v3.model.kwargs  # Fig. 2, the default
  assert sorted(exp.get_config("cpu,families=inception_v3").models) == [
      "dfs_inception_v3", "inception_v3"]
  assert sorted(exp.get_config("cpu,families=resnet50+inception_v3,v1=inception_v3").models) == [
      "dfs_inception_v3", "dfs_inception_v3_v1", "dfs_resnet50", "inception_v3", "resnet50"]
