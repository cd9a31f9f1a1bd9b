"""DFS module and DFS-Nets (seed paper 002, Sec. 3.1, Fig. 2): backbone + multi-branch head."""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import inception, mobilenet, outputs, resnet


class DFSModule(nn.Module):
  """Deep feature selection module: four parallel branches on a feature map.

  Branches on `x: [b, h, w, c]` (all stride 1, SAME padding, every conv followed by BN + ReLU):
    0: 1x1 conv -> `widths[0]` channels;
    1: 1x1 conv (`bottlenecks[0]`) -> 3x3 conv -> `widths[1]`;
    2: 1x1 conv (`bottlenecks[1]`) -> parallel 1x3 and 3x1 convs (Inception-v3 style split),
       concatenated -> `widths[2]` (the 1x3 half gets `widths[2] // 2`);
    3: 3x3 average pool -> 1x1 conv -> `widths[3]`.
  Returns the four maps `([b, h, w, widths[i]] for i in 0..3)`; DFSNet concatenates them.
  Batch norm: `use_running_average=not train`, momentum 0.9, epsilon 1e-3, with scale.

  Attributes:
    widths: output channels of the four branches.
    bottlenecks: 1x1 reduction widths of branches 1 and 2 (None: half the branch widths).
    train: batch-norm mode.
  """

  widths: tuple[int, int, int, int] = (512, 512, 512, 512)
  bottlenecks: tuple[int, int] | None = None
  train: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    if len(self.widths) != 4 or min(self.widths) < 1 or self.widths[2] < 2:
      raise ValueError(f"widths must be 4 positive ints (widths[2] >= 2), got {self.widths}")
    bottlenecks = self.bottlenecks or (max(1, self.widths[1] // 2), max(1, self.widths[2] // 2))
    if len(bottlenecks) != 2 or min(bottlenecks) < 1:
      raise ValueError(f"bottlenecks must be 2 positive ints, got {self.bottlenecks}")
    conv = functools.partial(inception.ConvBN, train=self.train, bn_scale=True,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    b0 = conv(self.widths[0], (1, 1), name="branch1x1")(x)
    b1 = conv(bottlenecks[0], (1, 1), name="branch3x3_reduce")(x)
    b1 = conv(self.widths[1], (3, 3), name="branch3x3")(b1)
    b2 = conv(bottlenecks[1], (1, 1), name="branch1x3_3x1_reduce")(x)
    half = self.widths[2] // 2
    b2 = jnp.concatenate([conv(half, (1, 3), name="branch1x3")(b2),
                          conv(self.widths[2] - half, (3, 1), name="branch3x1")(b2)], axis=-1)
    b3 = nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
    b3 = conv(self.widths[3], (1, 1), name="branch_pool")(b3)
    return b0, b1, b2, b3


class DFSNet(nn.Module):
  """DFS-Net: backbone (without its classifier) -> DFS module -> global average pool -> dense.

  `backbone` is a module built with `head=False` (ResNet, InceptionV3 or MobileNetV2), returning
  its final feature map `[b, h', w', C]`. Endpoints: `pool` (`f32[b, C]`, the backbone's own
  pooled feature) and `dfs` (`f32[b, sum(widths)]`, the pooled DFS output that feeds the
  classifier: 2048 for DFS-Net-R/I, 1280 for DFS-Net-M by default).

  Attributes:
    backbone: feature-map module (see `dfs_resnet50` etc. for ready-made ones).
    num_classes: classifier width.
    widths, bottlenecks: DFSModule branch widths.
    dropout_rate: dropout before the classifier in train mode (needs a "dropout" rng).
    dtype, param_dtype: DFS head computation and parameter dtypes; outputs are float32.

  Call: `apply(variables, x, train=False, features=None)`, `x: f32[b, h, w, c]` -> logits
  `f32[b, num_classes]`, or `(logits, dict)` with the requested endpoints.
  """

  ENDPOINTS: ClassVar[tuple[str, ...]] = ("pool", "dfs")

  backbone: nn.Module
  num_classes: int
  widths: tuple[int, int, int, int] = (512, 512, 512, 512)
  bottlenecks: tuple[int, int] | None = None
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               features: Sequence[str] | None = None) -> outputs.Outputs:
    requested = outputs.check_endpoints(features, self.ENDPOINTS, "dfs_net")
    fmap = self.backbone(x, train=train)
    if fmap.ndim != 4:
      raise ValueError(f"backbone must return a [b, h, w, c] map (build it with head=False), "
                       f"got shape {fmap.shape}")
    values = {"pool": jnp.mean(fmap, axis=(1, 2))}
    branches = DFSModule(self.widths, self.bottlenecks, train=train, dtype=self.dtype,
                         param_dtype=self.param_dtype, name="dfs")(fmap)
    values["dfs"] = jnp.mean(jnp.concatenate(branches, axis=-1), axis=(1, 2))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(values["dfs"])
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="head")(y)
    return outputs.package(logits, values, requested)


def _dfs_net(backbone_cls: Any, default_widths: tuple[int, int, int, int], *, num_classes: int,
             small_input: bool = False, dtype: Any = jnp.float32,
             param_dtype: Any = jnp.float32, backbone_kwargs: dict | None = None,
             widths: tuple[int, int, int, int] | None = None, **kwargs) -> DFSNet:
  backbone = backbone_cls(num_classes=num_classes, head=False, small_input=small_input,
                          dtype=dtype, param_dtype=param_dtype, **(backbone_kwargs or {}))
  return DFSNet(backbone=backbone, num_classes=num_classes, widths=widths or default_widths,
                dtype=dtype, param_dtype=param_dtype, **kwargs)


# DFS-Net-R / -I / -M: keyword args `small_input`, `dtype`, `param_dtype`, `backbone_kwargs`
# (extra backbone fields) and the DFSNet fields `widths`, `bottlenecks`, `dropout_rate`.
dfs_resnet50 = functools.partial(_dfs_net, resnet.ResNet50, (512, 512, 512, 512))
dfs_inception_v3 = functools.partial(_dfs_net, inception.InceptionV3, (512, 512, 512, 512))
dfs_mobilenet_v2 = functools.partial(_dfs_net, mobilenet.MobileNetV2, (320, 320, 320, 320))
# Tiny variants for tests (64-d DFS feature).
_dfs_resnet_tiny = functools.partial(_dfs_net, resnet._ResNetTiny, (16, 16, 16, 16))
_dfs_inception_v3_tiny = functools.partial(_dfs_net, inception._InceptionV3Tiny,
                                           (16, 16, 16, 16))
_dfs_mobilenet_v2_tiny = functools.partial(_dfs_net, mobilenet._MobileNetV2Tiny,
                                           (16, 16, 16, 16))
