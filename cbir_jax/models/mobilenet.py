"""MobileNetV2 (torchvision layout; width 1.0 = 3,504,872 parameters) with a `pool` endpoint;
`variant="keras"` matches Keras applications' MobileNetV2 exactly (imported weights)."""

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import outputs

ModuleDef = Any

# (expansion t, output channels c, repeats n, first stride s), as in Sandler et al. Table 2.
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds a channel count to a multiple of `divisor` without going 10% below `value`."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


class InvertedResidual(nn.Module):
  """1x1 expand (if t > 1) -> 3x3 depthwise (stride) -> 1x1 linear projection, BN after each.

  `x: [b, h, w, c_in] -> [b, h / s, w / s, features]`; identity shortcut when stride is 1 and
  c_in == features. `strided_padding`: the depthwise conv's padding when strides > 1 (torch's
  symmetric ((1, 1), (1, 1)), or "SAME" as Keras pads it: (0, 1) on even sizes).
  """

  features: int
  expansion: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  strided_padding: Any = ((1, 1), (1, 1))

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_ch = x.shape[-1]
    hidden = in_ch * self.expansion
    y = x
    if self.expansion != 1:
      y = self.act(self.norm()(self.conv(hidden, (1, 1))(y)))
    padding = self.strided_padding if self.strides > 1 else ((1, 1), (1, 1))
    y = self.conv(hidden, (3, 3), (self.strides, self.strides), padding=padding,
                  feature_group_count=hidden)(y)
    y = self.act(self.norm()(y))
    y = self.norm()(self.conv(self.features, (1, 1))(y))
    if self.strides == 1 and in_ch == self.features:
      y = x + y
    return y


class MobileNetV2(nn.Module):
  """MobileNetV2: 3x3/2 stem (32 ch), 17 inverted-residual blocks, 1x1 conv to 1280, pool, FC.

  Convs have no bias, each followed by batch norm (momentum 0.9, epsilon 1e-5,
  `use_running_average=not train`) and ReLU6 except projections. Head: global average pool ->
  `pool` feature (`f32[b, last_channels]`, 1280 at width 1.0) -> dropout (0.2) -> dense. With
  1000 classes and width 1.0: 3,504,872 parameters. `small_input=True` makes the stem stride 1
  (CIFAR-style; 32x32 -> 2x2 final map instead of 1x1).

  Attributes:
    num_classes: classifier width.
    width_mult: channel multiplier (channels rounded to multiples of 8).
    settings: (t, c, n, s) block groups.
    last_channels: width of the final 1x1 conv before the width multiplier (>= 1.0 scales it).
    dropout_rate: dropout before the classifier in train mode (needs a "dropout" rng).
    small_input: stride-1 stem.
    variant: "default" (torchvision's mobilenet_v2 exactly) or "keras" (Keras applications
      MobileNetV2: stride-2 convs padded "SAME", i.e. (0, 1) on even sizes, BN epsilon 1e-3);
      same parameters and names.
    head: when False, `__call__(x, train)` returns the final feature map
      `f32[b, h', w', last]` (used by DFS-Nets).
    dtype, param_dtype: computation and parameter dtypes; outputs are float32.

  Call: `apply(variables, x, train=False, features=None)`, `x: f32[b, h, w, c]` -> logits
  `f32[b, num_classes]` or `(logits, {"pool": f32[b, last]})`.
  """

  ENDPOINTS: ClassVar[tuple[str, ...]] = ("pool",)
  VARIANTS: ClassVar[tuple[str, ...]] = ("default", "keras")

  num_classes: int
  width_mult: float = 1.0
  settings: Sequence[tuple[int, int, int, int]] = MOBILENET_V2_SETTINGS
  last_channels: int = 1280
  dropout_rate: float = 0.2
  small_input: bool = False
  variant: str = "default"
  head: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               features: tuple[str, ...] | None = None) -> outputs.Outputs:
    requested = outputs.check_endpoints(features, self.ENDPOINTS, "mobilenet_v2")
    if x.ndim != 4:
      raise ValueError(f"x must be [batch, height, width, channels], got shape {x.shape}")
    if not self.head and requested is not None:
      raise ValueError(f"features={features!r} needs head=True; head=False returns the feature map")
    if self.width_mult <= 0:
      raise ValueError(f"width_mult must be > 0, got {self.width_mult}")
    if self.variant not in self.VARIANTS:
      raise ValueError(f"variant must be one of {self.VARIANTS}, got {self.variant!r}")
    keras = self.variant == "keras"
    strided_padding = "SAME" if keras else ((1, 1), (1, 1))
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-3 if keras else 1e-5, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    act = nn.relu6
    x = jnp.asarray(x, self.dtype)
    stem_stride = 1 if self.small_input else 2
    x = conv(make_divisible(32 * self.width_mult), (3, 3), (stem_stride, stem_stride),
             padding=strided_padding if stem_stride > 1 else ((1, 1), (1, 1)),
             name="conv_stem")(x)
    x = act(norm(name="bn_stem")(x))
    for t, c, n, s in self.settings:
      for i in range(n):
        x = InvertedResidual(make_divisible(c * self.width_mult), t, s if i == 0 else 1,
                             conv=conv, norm=norm, act=act, strided_padding=strided_padding)(x)
    last = make_divisible(self.last_channels * max(1.0, self.width_mult))
    x = act(norm(name="bn_last")(conv(last, (1, 1), name="conv_last")(x)))
    if not self.head:
      return x
    pooled = jnp.mean(x, axis=(1, 2))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="head")(y)
    return outputs.package(logits, {"pool": pooled}, requested)


# CPU-scale MobileNetV2 (docs/MODELS.md, "CPU-scale variants"): MobileNetV2's 17 inverted
# residual blocks at width 0.5 with its stride-2 stem, the 160-channel group at stride 1 instead
# of 2 (32x32 -> 2x2 final map instead of 1x1), 1280-d pool feature.
MobileNetV2CPU = functools.partial(
    MobileNetV2, width_mult=0.5, dropout_rate=0.0,
    settings=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 1), (6, 320, 1, 1)))
# Tiny variant for tests: 4 one-block groups at width 0.25, 64-d pool feature.
_MobileNetV2Tiny = functools.partial(
    MobileNetV2, width_mult=0.25, last_channels=64,
    settings=((1, 16, 1, 1), (6, 24, 1, 2), (6, 32, 1, 2), (6, 64, 1, 2)))
