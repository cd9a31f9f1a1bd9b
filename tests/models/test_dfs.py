"""Tests for cbir_jax.models.dfs: DFS module branches and DFS-Net composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import dfs, registry, resnet


@pytest.fixture(scope="module")
def module_and_vars(host_init):
  module = dfs.DFSModule(widths=(8, 6, 9, 4), bottlenecks=(3, 5), layout="v1")
  x = jax.random.normal(jax.random.key(0), (2, 4, 5, 12))
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  return module, x, host_init(shapes, seed=0)


def test_v1_branch_output_shapes(module_and_vars):
  module, x, variables = module_and_vars
  branches = module.apply(variables, x)
  assert [b.shape for b in branches] == [(2, 4, 5, 8), (2, 4, 5, 6), (2, 4, 5, 9), (2, 4, 5, 4)]
  assert all(np.all(np.asarray(b) >= 0) for b in branches)  # every branch ends in ReLU


def test_v1_branch_layers(module_and_vars):
  _, _, variables = module_and_vars
  p = variables["params"]
  kernels = {name: p[name]["Conv_0"]["kernel"].shape for name in p}
  assert kernels == {
      "branch1x1": (1, 1, 12, 8),
      "branch3x3_reduce": (1, 1, 12, 3), "branch3x3": (3, 3, 3, 6),
      "branch1x3_3x1_reduce": (1, 1, 12, 5), "branch1x3": (1, 3, 5, 4), "branch3x1": (3, 1, 5, 5),
      "branch_pool": (1, 1, 12, 4),
  }
  assert all("scale" in p[name]["BatchNorm_0"] for name in p)  # BN with scale + bias, then ReLU
  assert set(variables["batch_stats"]) == set(p)


def test_v1_pool_branch_is_avg_pool_then_1x1(module_and_vars):
  module, x, variables = module_and_vars
  # Zero all other branches' effect by checking the pool branch against a manual computation.
  p = variables["params"]["branch_pool"]
  pooled = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  counts = jax.lax.reduce_window(jnp.ones_like(x[..., :1]), 0.0, jax.lax.add, (1, 3, 3, 1),
                                 (1, 1, 1, 1), "SAME")
  y = (pooled / counts) @ p["Conv_0"]["kernel"][0, 0]
  stats = variables["batch_stats"]["branch_pool"]["BatchNorm_0"]
  bn = p["BatchNorm_0"]
  y = (y - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-3) * bn["scale"] + bn["bias"]
  np.testing.assert_allclose(module.apply(variables, x)[3], jax.nn.relu(y), rtol=1e-4,
                             atol=1e-5)


@pytest.fixture(scope="module")
def fig2_and_vars(host_init):
  module = dfs.DFSModule(widths=(8, 6, 9, 4), compression=7, mid_width=5)
  x = jax.random.normal(jax.random.key(0), (2, 4, 5, 12))
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  return module, x, host_init(shapes, seed=0)


def test_fig2_is_the_default_layout():
  assert dfs.DFSModule().layout == "fig2" and dfs.DFSNet.layout == "fig2"
  model = registry.get_model("dfs_resnet_tiny", num_classes=3)
  assert model.layout == "fig2"


def test_fig2_branch_output_shapes(fig2_and_vars):
  module, x, variables = fig2_and_vars
  branches = module.apply(variables, x)
  assert [b.shape for b in branches] == [(2, 4, 5, 8), (2, 4, 5, 6), (2, 4, 5, 9), (2, 4, 5, 4)]
  assert all(np.all(np.asarray(b) >= 0) for b in branches)  # every branch ends in ReLU


def test_fig2_layers_compression_and_four_asymmetric_convs(fig2_and_vars):
  _, _, variables = fig2_and_vars
  p = variables["params"]
  kernels = {name: p[name]["Conv_0"]["kernel"].shape for name in p}
  assert kernels == {
      "compress": (1, 1, 12, 7),                       # "before entering the DFS module"
      "branch1x1": (1, 1, 7, 8),
      "branch1x3": (1, 3, 7, 3), "branch3x1": (3, 1, 7, 3),             # 1x3 3x1
      "branch3x3": (3, 3, 7, 5),
      "branch3x3_3x1": (3, 1, 5, 4), "branch3x3_1x3": (1, 3, 5, 5),     # 3x1 1x3
      "branch_pool": (1, 1, 7, 4),
  }
  asymmetric = [k for k in kernels.values() if k[0] != k[1]]
  assert len(asymmetric) == 4
  assert all("scale" in p[name]["BatchNorm_0"] for name in p)
  assert set(variables["batch_stats"]) == set(p)


def test_fig2_branches_read_the_compressed_map(fig2_and_vars):
  # Branch 0 is 1x1 conv + BN + ReLU of the compression's output, computed by hand.
  module, x, variables = fig2_and_vars
  p, stats = variables["params"], variables["batch_stats"]

  def conv_bn_relu(y, name):
    y = jax.lax.conv_general_dilated(y, p[name]["Conv_0"]["kernel"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    s, bn = stats[name]["BatchNorm_0"], p[name]["BatchNorm_0"]
    return jax.nn.relu((y - s["mean"]) / jnp.sqrt(s["var"] + 1e-3) * bn["scale"] + bn["bias"])

  z = conv_bn_relu(x, "compress")
  got = module.apply(variables, x)
  np.testing.assert_allclose(got[0], conv_bn_relu(z, "branch1x1"), rtol=1e-4, atol=1e-5)
  b2 = conv_bn_relu(z, "branch3x3")
  want = jnp.concatenate([conv_bn_relu(b2, "branch3x3_3x1"), conv_bn_relu(b2, "branch3x3_1x3")],
                         -1)
  np.testing.assert_allclose(got[2], want, rtol=1e-4, atol=1e-5)


def test_fig2_defaults_halve_the_input_and_branch_2():
  module = dfs.DFSModule(widths=(8, 8, 10, 8))
  p = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 3, 3, 12)))["params"]
  assert p["compress"]["Conv_0"]["kernel"].shape == (1, 1, 12, 6)
  assert p["branch3x3"]["Conv_0"]["kernel"].shape == (3, 3, 6, 5)


@pytest.mark.parametrize("kwargs,match", [
    ({"widths": (8, 8, 8)}, "widths"),
    ({"widths": (8, 8, 1, 8), "layout": "v1"}, "widths"),
    ({"widths": (8, 1, 8, 8)}, "widths"),
    ({"widths": (8, 8, 8, 8), "bottlenecks": (0, 4), "layout": "v1"}, "bottlenecks"),
    ({"bottlenecks": (4, 4)}, "layout 'v1'"),
    ({"layout": "v1", "compression": 4}, "layout 'fig2'"),
    ({"layout": "fig3"}, "fig3"),
])
def test_bad_widths_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(dfs.DFSModule(**kwargs).init, jax.random.key(0), jnp.zeros((1, 3, 3, 4)))


def test_dfs_net_endpoints_are_backbone_pool_and_pooled_branches(host_init):
  model = registry.get_model("dfs_resnet_tiny", num_classes=3, small_input=True)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = host_init(jax.eval_shape(model.init, jax.random.key(0), x), seed=0)

  def run(v, x):
    logits, feats = model.apply(v, x, features=("pool", "dfs"))
    backbone_vars = {k: v[k]["backbone"] for k in v}
    fmap = model.backbone.apply(backbone_vars, x)
    dfs_vars = {k: v[k]["dfs"] for k in v}
    branches = dfs.DFSModule(model.widths).apply(dfs_vars, fmap)
    return logits, feats, fmap, jnp.concatenate(branches, -1).mean(axis=(1, 2))

  logits, feats, fmap, expected_dfs = jax.jit(run)(variables, x)
  assert fmap.shape == (2, 4, 4, 256)  # CIFAR stem: 32 -> 4x4, tiny ResNet width 8 * 32
  np.testing.assert_allclose(feats["pool"], fmap.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feats["dfs"], expected_dfs, rtol=1e-5, atol=1e-6)
  assert feats["dfs"].shape == (2, 64) and logits.shape == (2, 3)


@pytest.mark.parametrize("layout", ["fig2", "v1"])
def test_both_layouts_through_the_registry(layout):
  for name in ("dfs_resnet_tiny", "dfs_inception_v3_tiny", "dfs_mobilenet_v2_tiny"):
    model = registry.get_model(name, num_classes=3, small_input=True, layout=layout)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables, (logits, feats) = jax.eval_shape(
        lambda x, m=model: (lambda v: (v, m.apply(v, x, features=("pool", "dfs"))))(
            m.init(jax.random.key(0), x)), x)
    assert registry.endpoints(name) == ("pool", "dfs")
    assert feats["dfs"].shape == (2, 64) and logits.shape == (2, 3)
    assert ("compress" in variables["params"]["dfs"]) == (layout == "fig2")


def test_registry_widths_and_backbone_kwargs():
  model = registry.get_model("dfs_mobilenet_v2", num_classes=4, widths=(10, 20, 30, 40),
                             backbone_kwargs={"width_mult": 0.5})
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  _, feats = jax.eval_shape(
      lambda x: model.apply(model.init(jax.random.key(0), x), x, features="dfs"), x)
  assert feats["dfs"].shape == (1, 100)


def test_backbone_with_head_is_rejected():
  model = dfs.DFSNet(backbone=resnet._ResNetTiny(num_classes=3), num_classes=3)
  with pytest.raises(ValueError, match="head=False"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_headless_backbone_returns_map_and_rejects_features():
  trunk = resnet._ResNetTiny(num_classes=3, head=False, small_input=True)
  x = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(trunk.init, jax.random.key(0), x)
  assert jax.eval_shape(trunk.apply, variables, x).shape == (1, 4, 4, 256)
  with pytest.raises(ValueError, match="head=True"):
    jax.eval_shape(lambda v, x: trunk.apply(v, x, features=("pool",)), variables, x)
