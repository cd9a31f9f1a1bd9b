"""Exact parameter counts and output shapes at paper input sizes, all via jax.eval_shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.models import registry


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _shapes(name: str, hw: tuple[int, int], num_classes: int = 1000, batch: int = 2, **kwargs):
  """Returns (variables, logits, features) as ShapeDtypeStructs; nothing is allocated."""
  model = registry.get_model(name, num_classes=num_classes, **kwargs)
  x = jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32)

  def run(x):
    variables = model.init(jax.random.key(0), x)
    logits, feats = model.apply(variables, x, features=registry.endpoints(name))
    return variables, logits, feats

  return jax.eval_shape(run, x)


# name, paper input size, params, params + batch_stats, {endpoint: dim} at 1000 classes.
PAPER = [
    ("alexnet", (224, 224), 61_100_840, 61_100_840, {"fc6": 4096, "fc7": 4096, "fc8": 1000}),
    ("alexnet", (227, 227), 61_100_840, 61_100_840, {"fc6": 4096, "fc7": 4096, "fc8": 1000}),
    ("resnet50", (224, 224), 25_557_032, 25_610_152, {"pool": 2048}),
    ("mobilenet_v2", (224, 224), 3_504_872, 3_538_984, {"pool": 1280}),
    # Keras layout (BN without scale): 23,851,784 = params + BN moving means/variances.
    ("inception_v3", (299, 299), 23_817_352, 23_851_784, {"pool": 2048}),
]


@pytest.mark.parametrize("name,hw,n_params,n_total,dims", PAPER)
def test_paper_models(name, hw, n_params, n_total, dims):
  variables, logits, feats = _shapes(name, hw)
  assert _count(variables["params"]) == n_params
  assert _count(variables) == n_total
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert {k: v.shape for k, v in feats.items()} == {k: (2, d) for k, d in dims.items()}


@pytest.mark.parametrize("name,hw,dfs_dim,pool_dim", [
    ("dfs_resnet50", (224, 224), 2048, 2048),
    ("dfs_inception_v3", (299, 299), 2048, 2048),
    ("dfs_mobilenet_v2", (224, 224), 1280, 1280),
])
def test_dfs_nets_at_paper_size(name, hw, dfs_dim, pool_dim):
  variables, logits, feats = _shapes(name, hw, num_classes=10)
  assert logits.shape == (2, 10)
  assert feats["dfs"].shape == (2, dfs_dim) and feats["pool"].shape == (2, pool_dim)
  assert variables["params"]["head"]["kernel"].shape == (dfs_dim, 10)
  # The backbone's own classifier is dropped.
  assert "head" not in variables["params"]["backbone"]


# DFS-Nets at 1000 classes: params, params + batch_stats, and the DFS module's own params.
# "fig2" (the default since 2026-11-28, issue 21): 1x1 compression to half the backbone's
# channels, then 1x1 | 1x3+3x1 | 3x3 -> 3x1+1x3 | avg pool + 1x1; e.g. DFS-Net-R's module:
# 2048*1024 + 1024*512 + 2*(1024*256*3) + 1024*256*9 + 2*(256*256*3) + 1024*512 weights + BN
# scale/bias (2 per channel) = 7,477,760. "v1" (the layout before, per-branch 1x1 reductions):
# the counts docs/MODELS.md has always listed (30,280,744 for DFS-Net-R).
DFS_COUNTS = [
    ("dfs_resnet50", (224, 224), "fig2", 33_034_792, 33_094_568, 7_477_760),
    ("dfs_resnet50", (224, 224), "v1", 30_280_744, 30_338_984, 4_723_712),
    ("dfs_inception_v3", (299, 299), "fig2", 31_295_112, 31_336_200, 7_477_760),
    ("dfs_inception_v3", (299, 299), "v1", 28_541_064, 28_580_616, 4_723_712),
    ("dfs_mobilenet_v2", (224, 224), "fig2", 6_427_432, 6_465_704, 2_922_560),
    ("dfs_mobilenet_v2", (224, 224), "v1", 5_351_272, 5_388_584, 1_846_400),
]


@pytest.mark.parametrize("name,hw,layout,n_params,n_total,n_module", DFS_COUNTS)
def test_dfs_net_counts(name, hw, layout, n_params, n_total, n_module):
  variables, _, _ = _shapes(name, hw, layout=layout)
  assert _count(variables["params"]) == n_params
  assert _count(variables) == n_total
  assert _count(variables["params"]["dfs"]) == n_module
  if layout == "v1":  # v1 = backbone without its classifier + module + 2048/1280 -> 1000 head
    backbone = {"dfs_resnet50": 25_557_032, "dfs_inception_v3": 23_817_352,
                "dfs_mobilenet_v2": 3_504_872}[name]
    assert n_params - n_module == backbone


@pytest.mark.parametrize("name,kwargs", [
    ("alexnet", {"small_input": True}),
    ("resnet50", {"small_input": True}),
    ("mobilenet_v2", {"small_input": True}),
    ("inception_v3", {"small_input": True}),
    ("dfs_resnet50", {"small_input": True}),
])
def test_full_size_models_at_32x32(name, kwargs):
  _, logits, feats = _shapes(name, (32, 32), num_classes=10, **kwargs)
  assert logits.shape == (2, 10)
  assert all(v.shape[0] == 2 and v.ndim == 2 for v in feats.values())


def test_small_input_changes_only_what_it_should():
  # ResNet: the 7x7 stem (9,408 weights) becomes 3x3 (1,728); InceptionV3 keeps every parameter.
  full, _, _ = _shapes("resnet50", (224, 224))
  small, _, _ = _shapes("resnet50", (32, 32), small_input=True)
  assert _count(full["params"]) - _count(small["params"]) == 64 * 3 * (49 - 9)
  incep, _, _ = _shapes("inception_v3", (32, 32), small_input=True)
  assert _count(incep) == 23_851_784


def test_inception_aux_head():
  variables, logits, feats = _shapes("inception_v3", (299, 299), aux_logits=True)
  assert _count(variables["params"]) == 23_817_352 + 3_325_800
  model = registry.get_model("inception_v3", num_classes=7, aux_logits=True)
  x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
  out = jax.eval_shape(
      lambda x: model.apply(model.init(jax.random.key(0), x), x, features=("aux", "pool")), x)
  assert out[1]["aux"].shape == (2, 7) and out[1]["pool"].shape == (2, 2048)


@pytest.mark.parametrize("name,hw,match", [
    ("alexnet", (62, 62), "small_input"),
    ("inception_v3", (74, 80), "small_input"),
    ("lenet_l", (15, 32), "16x16"),
])
def test_too_small_inputs_raise(name, hw, match):
  with pytest.raises(ValueError, match=match):
    _shapes(name, hw)


def test_reduced_precision_keeps_float32_outputs():
  variables, logits, feats = _shapes("resnet_tiny", (32, 32), dtype=jnp.bfloat16,
                                     small_input=True)
  assert logits.dtype == jnp.float32 and feats["pool"].dtype == jnp.float32
  variables, _, _ = _shapes("lenet_l", (32, 32), param_dtype=jnp.bfloat16)
  assert variables["params"]["lk"]["kernel"].dtype == jnp.bfloat16
