"""ResNet (v1.5, torchvision layout; ResNet50 = 25,557,032 parameters) with a `pool` endpoint;
`variant="torchvision"` / `"keras"` match those frameworks' ResNet50 exactly (imported weights)."""

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import outputs
from cbir_jax.models.pooling import max_pool

ModuleDef = Any


def _check_stem_stride(stem_stride: int, small_input: bool) -> None:
  """stem_stride must be 1 or 2, and 2 only with small_input (ValueError naming the value)."""
  if stem_stride not in (1, 2) or (stem_stride == 2 and not small_input):
    raise ValueError(f"stem_stride must be 1, or 2 with small_input=True; got stem_stride="
                     f"{stem_stride!r}, small_input={small_input}")


class BottleneckBlock(nn.Module):
  """1x1 -> 3x3 (stride here, v1.5) -> 1x1 (4x) bottleneck with a projection when shapes change.

  `x: [b, h, w, c] -> [b, h / s, w / s, 4 * filters]`. Each conv is followed by batch norm (the
  last one's scale starts at zero, so each block starts as the identity). `stride_in_1x1`: the
  stride goes on the first 1x1 conv instead (ResNet v1, Keras). `padding_3x3`: the 3x3 conv's
  padding ("SAME", or ((1, 1), (1, 1)) as torch pads it: they differ for stride 2 on even sizes).
  """

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]
  strides: tuple[int, int] = (1, 1)
  stride_in_1x1: bool = False
  padding_3x3: Any = "SAME"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    residual = x
    s1, s3 = (self.strides, (1, 1)) if self.stride_in_1x1 else ((1, 1), self.strides)
    y = self.act(self.norm()(self.conv(self.filters, (1, 1), s1)(x)))
    y = self.act(self.norm()(self.conv(self.filters, (3, 3), s3, padding=self.padding_3x3)(y)))
    y = self.norm(scale_init=nn.initializers.zeros_init())(self.conv(self.filters * 4, (1, 1))(y))
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class ResNet(nn.Module):
  """ResNet with bottleneck blocks; ResNet50 = `stage_sizes=(3, 4, 6, 3)`.

  Stem: 64@7x7/2 conv, BN, ReLU, 3x3/2 max pool; `small_input=True` uses a 3x3 conv of stride
  `stem_stride` (default 1) and no max pool (CIFAR stem, for 32x32 images: final map 4x4 instead
  of 1x1; 2x2 with `stem_stride=2`, a quarter of the work, as the CPU-scale variant uses). Then 4 stages
  (stride 1, 2, 2, 2), global average pool -> `pool` feature (`f32[b, 32 * num_filters]`, 2048
  for ResNet50) -> dense classifier. Batch norm: `use_running_average=not train`, momentum 0.9,
  epsilon 1e-5; train mode needs `mutable=["batch_stats"]`.

  Attributes:
    num_classes: classifier width.
    stage_sizes: blocks per stage.
    num_filters: stem width and first-stage bottleneck width.
    small_input: CIFAR stem.
    stem_stride: stride of the CIFAR stem's conv (1 or 2; only with `small_input`).
    variant: "default" (as above; the stride-2 3x3 convs use SAME padding, (0, 1) on even
      sizes), "torchvision" (torchvision's resnet50 exactly: those convs padded (1, 1)) or
      "keras" (Keras applications ResNet50, v1: stride on the first 1x1 conv of a block, convs
      with biases (+26,560 params), BN epsilon 1.001e-5). Parameter names are the same in all.
    head: when False, `__call__(x, train)` returns the final feature map
      `f32[b, h', w', 32 * num_filters]` (no pool, no classifier; used by DFS-Nets).
    dtype, param_dtype: computation and parameter dtypes; outputs are float32.

  Call: `apply(variables, x, train=False, features=None)`, `x: f32[b, h, w, c]` -> logits
  `f32[b, num_classes]` or `(logits, {"pool": f32[b, 32 * num_filters]})`.
  """

  ENDPOINTS: ClassVar[tuple[str, ...]] = ("pool",)
  VARIANTS: ClassVar[tuple[str, ...]] = ("default", "torchvision", "keras")

  num_classes: int
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  num_filters: int = 64
  small_input: bool = False
  stem_stride: int = 1
  variant: str = "default"
  head: bool = True
  act: Callable[[jax.Array], jax.Array] = nn.relu
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               features: tuple[str, ...] | None = None) -> outputs.Outputs:
    requested = outputs.check_endpoints(features, self.ENDPOINTS, "resnet")
    if x.ndim != 4:
      raise ValueError(f"x must be [batch, height, width, channels], got shape {x.shape}")
    if not self.head and requested is not None:
      raise ValueError(f"features={features!r} needs head=True; head=False returns the feature map")
    if self.variant not in self.VARIANTS:
      raise ValueError(f"variant must be one of {self.VARIANTS}, got {self.variant!r}")
    keras = self.variant == "keras"
    conv = functools.partial(nn.Conv, use_bias=keras, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1.001e-5 if keras else 1e-5, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    padding_3x3 = "SAME" if self.variant == "default" else ((1, 1), (1, 1))
    x = jnp.asarray(x, self.dtype)
    _check_stem_stride(self.stem_stride, self.small_input)
    if self.small_input:
      x = conv(self.num_filters, (3, 3), (self.stem_stride,) * 2, padding=((1, 1), (1, 1)),
               name="conv_init")(x)
    else:
      x = conv(self.num_filters, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name="conv_init")(x)
    x = self.act(norm(name="bn_init")(x))
    if not self.small_input:
      x = max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = BottleneckBlock(self.num_filters * 2**i, conv=conv, norm=norm, act=self.act,
                            strides=strides, stride_in_1x1=keras, padding_3x3=padding_3x3)(x)
    if not self.head:
      return x
    pooled = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="head")(pooled)
    return outputs.package(logits, {"pool": pooled}, requested)


ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
# CPU-scale ResNet (docs/MODELS.md, "CPU-scale variants"): ResNet50's bottleneck blocks and four
# stages, one block each, 16 filters (512-d pool feature), CIFAR stem of stride 2 (2x2 final map
# at 32x32); ~1.0 M parameters.
ResNetCPU = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=16, small_input=True,
                              stem_stride=2)
# Tiny variant for tests: one block per stage, 8 filters -> 256-d pool feature.
_ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=8)
