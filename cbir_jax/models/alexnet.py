"""AlexNet, torchvision layout (61,100,840 parameters at 1000 classes); fc6/fc7/fc8 endpoints."""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cbir_jax.models import conv, dense, outputs
from cbir_jax.models.pooling import adaptive_avg_pool, max_pool


def local_response_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> jax.Array:
  """Krizhevsky et al. (2012) LRN across channels of `x: [..., c]`, same shape and dtype.

  b_i = a_i / (k + alpha * sum_{j=i-size//2}^{i+size//2} a_j^2) ** beta (alpha is NOT divided by
  `size`, unlike torch.nn.LocalResponseNorm).
  """
  sq = jnp.square(x)
  half = size // 2
  padded = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)])
  window = sum(padded[..., i:i + x.shape[-1]] for i in range(size))
  return x / (k + alpha * window) ** beta


def _alexnet_min_size(small_input: bool) -> int:
  return 15 if small_input else 63


class AlexNet(nn.Module):
  """AlexNet: 5 conv + 3 dense layers, torchvision layout (single tower, 64/192/384/256/256).

  conv1 64@11x11/4 pad 2 -> ReLU -> [LRN] -> max 3x3/2 -> conv2 192@5x5 pad 2 -> ReLU -> [LRN] ->
  max 3x3/2 -> conv3 384@3x3 -> conv4 256@3x3 -> conv5 256@3x3 (ReLU each) -> max 3x3/2 ->
  adaptive average pool to 6x6 -> dropout -> fc6 4096 -> ReLU -> dropout -> fc7 4096 -> ReLU ->
  fc8 num_classes. With 1000 classes: 61,100,840 parameters at any input size (the adaptive pool
  fixes fc6's input at 6x6x256), e.g. 224x224 or the paper's 227x227. Inputs must be at least
  63x63; `small_input=True` swaps conv1 for 64@5x5/1 pad 2 (4,864 instead of 23,296 weights) so
  inputs of 15x15 and up (e.g. 32x32 CIFAR) work.

  Attributes:
    num_classes: fc8 width.
    dropout_rate: dropout before fc6 and fc7 in train mode (needs a "dropout" rng).
    lrn: apply local response normalisation after conv1 and conv2 (original paper; not in
      torchvision).
    small_input: 5x5 stride-1 conv1 for 32x32-sized inputs.
    widths: conv1..conv5 channel counts (tests use tiny ones).
    hidden: fc6 and fc7 width.
    dtype, param_dtype: computation and parameter dtypes; outputs are float32.

  Call: `apply(variables, x, train=False, features=None)`, `x: f32[b, h, w, c]`. Returns logits
  `f32[b, num_classes]`, or `(logits, dict)` with endpoints `fc6: f32[b, hidden]`,
  `fc7: f32[b, hidden]` (post-ReLU) and `fc8: f32[b, num_classes]` (= the logits).
  """

  ENDPOINTS: ClassVar[tuple[str, ...]] = ("fc6", "fc7", "fc8")

  num_classes: int
  dropout_rate: float = 0.5
  lrn: bool = False
  small_input: bool = False
  widths: tuple[int, int, int, int, int] = (64, 192, 384, 256, 256)
  hidden: int = 4096
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               features: tuple[str, ...] | None = None) -> outputs.Outputs:
    requested = outputs.check_endpoints(features, self.ENDPOINTS, "alexnet")
    if x.ndim != 4:
      raise ValueError(f"x must be [batch, height, width, channels], got shape {x.shape}")
    min_size = _alexnet_min_size(self.small_input)
    if min(x.shape[1:3]) < min_size:
      hint = "" if self.small_input else "; use small_input=True for small images"
      raise ValueError(
          f"AlexNet needs inputs of at least {min_size}x{min_size}, got "
          f"{x.shape[1]}x{x.shape[2]}{hint}")
    if len(self.widths) != 5:
      raise ValueError(f"widths must have 5 entries, got {self.widths}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    # winograd_conv: on CPU, conv2-conv5 (stride 1, 5x5 and 3x3) as Winograd convolutions
    # (models.conv); conv1 (3 input channels, stride 4) and other devices lax; same parameters.
    ckw = dict(kw, conv_general_dilated=conv.winograd_conv)
    # dense_dot_general: fc6-fc8 as width-1 1-D convolutions on CPU (models.dense), lax elsewhere.
    dkw = dict(kw, dot_general=dense.dense_dot_general)
    pool = lambda y: max_pool(y, (3, 3), strides=(2, 2), padding="VALID")
    x = jnp.asarray(x, self.dtype)
    if self.small_input:
      x = nn.Conv(self.widths[0], (5, 5), padding=((2, 2), (2, 2)), name="conv1", **ckw)(x)
    else:
      x = nn.Conv(self.widths[0], (11, 11), strides=(4, 4), padding=((2, 2), (2, 2)),
                  name="conv1", **ckw)(x)
    x = nn.relu(x)
    x = pool(local_response_norm(x) if self.lrn else x)
    x = nn.relu(nn.Conv(self.widths[1], (5, 5), padding=((2, 2), (2, 2)), name="conv2", **ckw)(x))
    x = pool(local_response_norm(x) if self.lrn else x)
    for i, width in enumerate(self.widths[2:], start=3):
      x = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{i}", **ckw)(x))
    x = pool(x)
    x = adaptive_avg_pool(x, (6, 6))
    # Flatten in (h, w, c) order; torchvision flattens (c, h, w): same count, permuted rows.
    x = x.reshape((x.shape[0], -1))
    values = {}
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(nn.Dense(self.hidden, name="fc6", **dkw)(x))
    values["fc6"] = x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(nn.Dense(self.hidden, name="fc7", **dkw)(x))
    values["fc7"] = x
    logits = nn.Dense(self.num_classes, name="fc8", **dkw)(x)
    values["fc8"] = logits
    return outputs.package(logits, values, requested)


# Tiny variant for tests: narrow convs and 32-wide fc6/fc7.
_AlexNetTiny = functools.partial(AlexNet, widths=(8, 16, 16, 16, 16), hidden=32)
