"""InceptionV3, Keras layout (23,851,784 parameters + BN statistics, no aux head); `pool`;
`variant="torchvision"` matches torchvision's inception_v3 exactly (imported weights)."""

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import outputs
from cbir_jax.models.pooling import adaptive_avg_pool, max_pool

ModuleDef = Any


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm -> ReLU: `[b, h, w, c] -> [b, h', w', features * width]`.

  Batch norm uses `use_running_average=not train`, momentum 0.9 and the given epsilon; with
  `bn_scale=False` (Keras InceptionV3) it learns only the offset beta.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: str = "SAME"
  width: float = 1.0
  train: bool = False
  bn_scale: bool = False
  epsilon: float = 1e-3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = max(1, int(round(self.features * self.width)))
    x = nn.Conv(features, self.kernel_size, self.strides, padding=self.padding, use_bias=False,
                dtype=self.dtype, param_dtype=self.param_dtype)(x)
    x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=self.epsilon,
                     use_scale=self.bn_scale, dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return nn.relu(x)


def _avg_pool_same(x: jax.Array, count_include_pad: bool = False) -> jax.Array:
  """3x3/1 average pool, SAME; padding counted (torch's default) or not (TF/Keras)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME",
                     count_include_pad=count_include_pad)


def _max_pool_valid(x: jax.Array) -> jax.Array:
  return max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """35x35 block (Keras mixed0-2): 64 + 64 + 96 + pool_features channels out."""

  pool_features: int
  conv: ModuleDef
  count_include_pad: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.conv(64, (1, 1))(x)
    b5 = self.conv(64, (5, 5))(self.conv(48, (1, 1))(x))
    b3 = self.conv(96, (3, 3))(self.conv(96, (3, 3))(self.conv(64, (1, 1))(x)))
    bp = self.conv(self.pool_features, (1, 1))(_avg_pool_same(x, self.count_include_pad))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """35x35 -> 17x17 reduction (Keras mixed3): 384 + 96 + input channels out."""

  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.conv(384, (3, 3), (2, 2), padding="VALID")(x)
    bd = self.conv(96, (3, 3))(self.conv(64, (1, 1))(x))
    bd = self.conv(96, (3, 3), (2, 2), padding="VALID")(bd)
    return jnp.concatenate([b3, bd, _max_pool_valid(x)], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convs (Keras mixed4-7): 4 x 192 channels out."""

  channels_7x7: int
  conv: ModuleDef
  count_include_pad: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    b1 = self.conv(192, (1, 1))(x)
    b7 = self.conv(192, (7, 1))(self.conv(c7, (1, 7))(self.conv(c7, (1, 1))(x)))
    bd = self.conv(c7, (1, 1))(x)
    for features, kernel in ((c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))):
      bd = self.conv(features, kernel)(bd)
    bp = self.conv(192, (1, 1))(_avg_pool_same(x, self.count_include_pad))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """17x17 -> 8x8 reduction (Keras mixed8): 320 + 192 + input channels out."""

  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.conv(320, (3, 3), (2, 2), padding="VALID")(self.conv(192, (1, 1))(x))
    b7 = self.conv(192, (7, 1))(self.conv(192, (1, 7))(self.conv(192, (1, 1))(x)))
    b7 = self.conv(192, (3, 3), (2, 2), padding="VALID")(b7)
    return jnp.concatenate([b3, b7, _max_pool_valid(x)], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with parallel 1x3/3x1 splits (Keras mixed9-10): 320 + 768 + 768 + 192 out."""

  conv: ModuleDef
  count_include_pad: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.conv(320, (1, 1))(x)
    b3 = self.conv(384, (1, 1))(x)
    b3 = jnp.concatenate([self.conv(384, (1, 3))(b3), self.conv(384, (3, 1))(b3)], axis=-1)
    bd = self.conv(384, (3, 3))(self.conv(448, (1, 1))(x))
    bd = jnp.concatenate([self.conv(384, (1, 3))(bd), self.conv(384, (3, 1))(bd)], axis=-1)
    bp = self.conv(192, (1, 1))(_avg_pool_same(x, self.count_include_pad))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier on the 17x17 map: pool to 5x5, 128@1x1, 768@5x5, dense.

  Uses an adaptive average pool to 5x5 (torchvision: 5x5/3 average pool, identical size at
  17x17) so any input size works. `[b, h, w, c] -> f32[b, num_classes]`.
  """

  num_classes: int
  conv: ModuleDef
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = adaptive_avg_pool(x, (5, 5))
    x = self.conv(768, (5, 5), padding="VALID")(self.conv(128, (1, 1))(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)


def inception_min_size(small_input: bool, stem_stride: int = 1) -> int:
  """Smallest input side InceptionV3 accepts (75; 13 with `small_input=True`, 23 with
  `small_input=True, stem_stride=2`)."""
  if not small_input:
    return 75
  return 13 if stem_stride == 1 else 23


class InceptionV3(nn.Module):
  """InceptionV3 (Szegedy et al. 2016) in the Keras `applications.InceptionV3` layout.

  Every conv has no bias and is followed by batch norm without scale (epsilon 1e-3, Keras) and
  ReLU. With 1000 classes and no aux head: 23,817,352 trainable `params` + 34,432 `batch_stats`
  (BN means and variances) = 23,851,784, Keras' published total. (torchvision's layout adds a
  BN scale: 23,834,568 params.) Stem 32@3x3/2, 32@3x3, 64@3x3, max 3x3/2, 80@1x1, 192@3x3,
  max 3x3/2; then mixed0-10 (Inception A x3, B, C x4, D, E x2), global average pool -> `pool`
  feature (2048-d) -> dropout -> dense. Inputs of at least 75x75 (paper: 299x299).
  `small_input=True` (CIFAR style, for 32x32): stride-1 first conv and no stem max pools; same
  parameters, 32x32 -> 5x5 final map; with `stem_stride=2` the first conv keeps its stride 2
  (32x32 -> 2x2 final map, about a sixth of the work; the CPU-scale variant).

  Attributes:
    num_classes: classifier width.
    aux_logits: add the auxiliary classifier on mixed7 (endpoint `aux`, f32[b, num_classes]);
      adds 3,325,800 params + 1,792 batch statistics at 1000 classes.
    dropout_rate: dropout before the classifier in train mode (torchvision uses 0.5; Keras 0).
    small_input: CIFAR stem.
    stem_stride: stride of the first conv with `small_input` (1 or 2; 2 is the full model's).
    variant: "default" (Keras applications InceptionV3 exactly) or "torchvision"
      (torchvision's inception_v3: BN with scale, +17,216 params; the 3x3 average pools of the
      blocks count padding). Parameter names are the same; the aux head is ours in both.
    width: channel multiplier for every conv (1.0 = InceptionV3; tests use tiny widths).
    head: when False, `__call__(x, train)` returns the final feature map (used by DFS-Nets).
    dtype, param_dtype: computation and parameter dtypes; outputs are float32.

  Call: `apply(variables, x, train=False, features=None)`, `x: f32[b, h, w, c]` -> logits
  `f32[b, num_classes]` or `(logits, {"pool": f32[b, 2048 * width]})` (plus "aux").
  """

  ENDPOINTS: ClassVar[tuple[str, ...]] = ("pool",)
  VARIANTS: ClassVar[tuple[str, ...]] = ("default", "torchvision")

  num_classes: int
  aux_logits: bool = False
  dropout_rate: float = 0.5
  small_input: bool = False
  stem_stride: int = 1
  variant: str = "default"
  width: float = 1.0
  head: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               features: Sequence[str] | None = None) -> outputs.Outputs:
    available = self.ENDPOINTS + (("aux",) if self.aux_logits else ())
    requested = outputs.check_endpoints(features, available, "inception_v3")
    if x.ndim != 4:
      raise ValueError(f"x must be [batch, height, width, channels], got shape {x.shape}")
    if not self.head and requested is not None:
      raise ValueError(f"features={features!r} needs head=True; head=False returns the feature map")
    if self.stem_stride not in (1, 2) or (self.stem_stride == 2 and not self.small_input):
      raise ValueError(f"stem_stride must be 1, or 2 with small_input=True; got stem_stride="
                       f"{self.stem_stride!r}, small_input={self.small_input}")
    min_size = inception_min_size(self.small_input, self.stem_stride)
    if min(x.shape[1:3]) < min_size:
      hint = "" if self.small_input else "; use small_input=True for small images"
      raise ValueError(f"InceptionV3 needs inputs of at least {min_size}x{min_size}, got "
                       f"{x.shape[1]}x{x.shape[2]}{hint}")
    if self.width <= 0:
      raise ValueError(f"width must be > 0, got {self.width}")
    if self.variant not in self.VARIANTS:
      raise ValueError(f"variant must be one of {self.VARIANTS}, got {self.variant!r}")
    torch = self.variant == "torchvision"
    conv = functools.partial(ConvBN, width=self.width, train=train, bn_scale=torch,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnp.asarray(x, self.dtype)
    stride = (self.stem_stride,) * 2 if self.small_input else (2, 2)
    x = conv(32, (3, 3), stride, padding="VALID")(x)
    x = conv(32, (3, 3), padding="VALID")(x)
    x = conv(64, (3, 3))(x)
    if not self.small_input:
      x = _max_pool_valid(x)
    x = conv(80, (1, 1), padding="VALID")(x)
    x = conv(192, (3, 3), padding="VALID")(x)
    if not self.small_input:
      x = _max_pool_valid(x)
    for pool_features in (32, 64, 64):
      x = InceptionA(pool_features, conv=conv, count_include_pad=torch)(x)
    x = InceptionB(conv=conv)(x)
    for channels_7x7 in (128, 160, 160, 192):
      x = InceptionC(channels_7x7, conv=conv, count_include_pad=torch)(x)
    values = {}
    if self.aux_logits and self.head:
      values["aux"] = InceptionAux(self.num_classes, conv=conv, dtype=self.dtype,
                                   param_dtype=self.param_dtype, name="aux")(x)
    x = InceptionD(conv=conv)(x)
    x = InceptionE(conv=conv, count_include_pad=torch)(x)
    x = InceptionE(conv=conv, count_include_pad=torch)(x)
    if not self.head:
      return x
    pooled = jnp.mean(x, axis=(1, 2))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="head")(y)
    values["pool"] = pooled
    return outputs.package(logits, values, requested)


# CPU-scale InceptionV3 (docs/MODELS.md, "CPU-scale variants"): every block of InceptionV3 at 1/8
# width (256-d pool feature), no stem max pools, stride-2 first conv (2x2 final map at 32x32).
InceptionV3CPU = functools.partial(InceptionV3, width=1 / 8, small_input=True, stem_stride=2,
                                   dropout_rate=0.0)
# Tiny variant for tests: every conv at 1/16 width (pool feature 128-d).
_InceptionV3Tiny = functools.partial(InceptionV3, width=1 / 16)
