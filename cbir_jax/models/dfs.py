"""DFS module and DFS-Nets (seed paper 002, Sec. 3.1, Fig. 2): backbone + multi-branch head."""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import inception, mobilenet, outputs, resnet


LAYOUTS = ("fig2", "v1")


class DFSModule(nn.Module):
  """Deep feature selection module: four parallel branches on a feature map.

  Two readings of seed 002's Fig. 2 (docs/MODELS.md quotes the paper), chosen by `layout`; on
  `x: [b, h, w, c]`, all convs stride 1 with SAME padding, each followed by BN + ReLU:

  "fig2" (default): the figure's layout. A 1x1 conv compresses x to `compression` channels
  ("a 1 x 1 convolution operation is first used to compress the output features of the network
  before entering the DFS module"; default c // 2), then on the compressed map z:
    0: 1x1 conv -> `widths[0]`;
    1: parallel 1x3 and 3x1 convs, concatenated -> `widths[1]` (the 1x3 half gets
       `widths[1] // 2`);
    2: 3x3 conv (`mid_width`, default `widths[2] // 2`) -> parallel 3x1 and 1x3 convs,
       concatenated -> `widths[2]` (the 3x1 half gets `widths[2] // 2`): with branch 1 the
       figure's four asymmetric convolutions "1x3 3x1 3x1 1x3" (Inception-v3's Mixed-7 / "E"
       block, where the 3x3 branch splits too);
    3: 3x3 average pool (padding not counted) -> 1x1 conv -> `widths[3]`.
  "v1" (the layout before 2026-11-28): no shared compression; per-branch 1x1 reductions:
    0: 1x1 conv -> `widths[0]` channels;
    1: 1x1 conv (`bottlenecks[0]`) -> 3x3 conv -> `widths[1]`;
    2: 1x1 conv (`bottlenecks[1]`) -> parallel 1x3 and 3x1 convs (Inception-v3 style split),
       concatenated -> `widths[2]` (the 1x3 half gets `widths[2] // 2`);
    3: 3x3 average pool -> 1x1 conv -> `widths[3]`.
  Returns the four maps `([b, h, w, widths[i]] for i in 0..3)`; DFSNet concatenates them.
  Batch norm: `use_running_average=not train`, momentum 0.9, epsilon 1e-3, with scale.

  Attributes:
    widths: output channels of the four branches.
    layout: "fig2" or "v1" (parameter names of "v1" are those of checkpoints written before).
    bottlenecks: "v1" only: 1x1 reduction widths of branches 1 and 2 (None: half the branch
      widths).
    compression: "fig2" only: width of the 1x1 compression (None: half the input channels).
    mid_width: "fig2" only: width of branch 2's 3x3 conv (None: `widths[2] // 2`).
    train: batch-norm mode.
  """

  widths: tuple[int, int, int, int] = (512, 512, 512, 512)
  bottlenecks: tuple[int, int] | None = None
  layout: str = "fig2"
  compression: int | None = None
  mid_width: int | None = None
  train: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    if self.layout not in LAYOUTS:
      raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
    split = (1, 2) if self.layout == "fig2" else (2,)  # branches whose output is two halves
    if (len(self.widths) != 4 or min(self.widths) < 1 or
        any(self.widths[i] < 2 for i in split)):
      halves = " and ".join(f"widths[{i}]" for i in split)
      raise ValueError(f"widths must be 4 positive ints ({halves} >= 2 for layout "
                       f"{self.layout!r}), got {self.widths}")
    conv = functools.partial(inception.ConvBN, train=self.train, bn_scale=True,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    if self.layout == "v1":
      if self.compression is not None or self.mid_width is not None:
        raise ValueError("compression and mid_width belong to layout 'fig2', got "
                         f"compression={self.compression}, mid_width={self.mid_width} with 'v1'")
      return self._v1(x, conv)
    if self.bottlenecks is not None:
      raise ValueError(f"bottlenecks belong to layout 'v1', got {self.bottlenecks} with 'fig2' "
                       "(its one 1x1 reduction is `compression`)")
    compression = self.compression or max(1, x.shape[-1] // 2)
    mid = self.mid_width or max(1, self.widths[2] // 2)
    if compression < 1 or mid < 1:
      raise ValueError(f"compression and mid_width must be >= 1, got {self.compression}, "
                       f"{self.mid_width}")

    def pair(y, width, first, second, names):  # two asymmetric convs side by side
      half = width // 2
      return jnp.concatenate([conv(half, first, name=names[0])(y),
                              conv(width - half, second, name=names[1])(y)], axis=-1)

    z = conv(compression, (1, 1), name="compress")(x)
    b0 = conv(self.widths[0], (1, 1), name="branch1x1")(z)
    b1 = pair(z, self.widths[1], (1, 3), (3, 1), ("branch1x3", "branch3x1"))
    b2 = conv(mid, (3, 3), name="branch3x3")(z)
    b2 = pair(b2, self.widths[2], (3, 1), (1, 3), ("branch3x3_3x1", "branch3x3_1x3"))
    b3 = nn.avg_pool(z, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)
    b3 = conv(self.widths[3], (1, 1), name="branch_pool")(b3)
    return b0, b1, b2, b3

  def _v1(self, x, conv):
    bottlenecks = self.bottlenecks or (max(1, self.widths[1] // 2), max(1, self.widths[2] // 2))
    if len(bottlenecks) != 2 or min(bottlenecks) < 1:
      raise ValueError(f"bottlenecks must be 2 positive ints, got {self.bottlenecks}")
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
    widths: DFSModule branch widths.
    layout: DFSModule layout, "fig2" (default, the paper's figure) or "v1" (before 2026-11-28).
    bottlenecks ("v1"), compression, mid_width ("fig2"): DFSModule's inner widths.
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
  layout: str = "fig2"
  compression: int | None = None
  mid_width: int | None = None
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
    branches = DFSModule(self.widths, self.bottlenecks, layout=self.layout,
                         compression=self.compression, mid_width=self.mid_width, train=train,
                         dtype=self.dtype, param_dtype=self.param_dtype, name="dfs")(fmap)
    values["dfs"] = jnp.mean(jnp.concatenate(branches, axis=-1), axis=(1, 2))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(values["dfs"])
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="head")(y)
    return outputs.package(logits, values, requested)


def _dfs_net(backbone_cls: Any, default_widths: tuple[int, int, int, int], *, num_classes: int,
             small_input: bool | None = None, dtype: Any = jnp.float32,
             param_dtype: Any = jnp.float32, backbone_kwargs: dict | None = None,
             widths: tuple[int, int, int, int] | None = None, **kwargs) -> DFSNet:
  """DFSNet on `backbone_cls(head=False)`; `small_input=None` keeps the backbone's own default."""
  extra = dict(backbone_kwargs or {})
  if small_input is not None:
    extra["small_input"] = small_input
  backbone = backbone_cls(num_classes=num_classes, head=False, dtype=dtype,
                          param_dtype=param_dtype, **extra)
  return DFSNet(backbone=backbone, num_classes=num_classes, widths=widths or default_widths,
                dtype=dtype, param_dtype=param_dtype, **kwargs)


# DFS-Net-R / -I / -M: keyword args `small_input`, `dtype`, `param_dtype`, `backbone_kwargs`
# (extra backbone fields) and the DFSNet fields `widths`, `layout`, `compression`, `mid_width`,
# `bottlenecks`, `dropout_rate`.
dfs_resnet50 = functools.partial(_dfs_net, resnet.ResNet50, (512, 512, 512, 512))
dfs_inception_v3 = functools.partial(_dfs_net, inception.InceptionV3, (512, 512, 512, 512))
dfs_mobilenet_v2 = functools.partial(_dfs_net, mobilenet.MobileNetV2, (320, 320, 320, 320))
# CPU-scale DFS-Nets (docs/MODELS.md, "CPU-scale variants"): the CPU-scale backbones with the
# same DFS module, branch widths in the paper's ratio (the DFS feature as wide as the backbone's
# pooled feature: 512 / 256 / 1280).
dfs_resnet_cpu = functools.partial(_dfs_net, resnet.ResNetCPU, (128, 128, 128, 128))
dfs_inception_v3_cpu = functools.partial(_dfs_net, inception.InceptionV3CPU, (64, 64, 64, 64))
dfs_mobilenet_v2_cpu = functools.partial(_dfs_net, mobilenet.MobileNetV2CPU,
                                         (320, 320, 320, 320))
# Tiny variants for tests (64-d DFS feature).
_dfs_resnet_tiny = functools.partial(_dfs_net, resnet._ResNetTiny, (16, 16, 16, 16))
_dfs_inception_v3_tiny = functools.partial(_dfs_net, inception._InceptionV3Tiny,
                                           (16, 16, 16, 16))
_dfs_mobilenet_v2_tiny = functools.partial(_dfs_net, mobilenet._MobileNetV2Tiny,
                                           (16, 16, 16, 16))
