"""Pooling helpers shared by the models: PyTorch-style adaptive average pooling."""

import jax
import jax.numpy as jnp


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
  """PyTorch `AdaptiveAvgPool2d` on `x: [b, h, w, c]` -> `[b, oh, ow, c]`, same dtype.

  Output bin i along an axis of length n averages input rows [floor(i * n / o),
  ceil((i + 1) * n / o)), exactly as PyTorch does; when n < o bins repeat input rows. An input
  already of the output size is returned unchanged. Shapes are static, so this is jit-safe.

  Raises:
    ValueError: `x` is not 4-D or an output size is < 1.
  """
  if x.ndim != 4:
    raise ValueError(f"x must be [batch, height, width, channels], got shape {x.shape}")
  if min(output_size) < 1:
    raise ValueError(f"output_size must be >= 1, got {output_size}")
  for axis, out in zip((1, 2), output_size):
    n = x.shape[axis]
    if n == out:
      continue
    if n % out == 0:
      shape = x.shape[:axis] + (out, n // out) + x.shape[axis + 1:]
      x = x.reshape(shape).mean(axis=axis + 1)
      continue
    bins = []
    for i in range(out):
      start, end = (i * n) // out, -((-(i + 1) * n) // out)
      bins.append(jax.lax.slice_in_dim(x, start, end, axis=axis).mean(axis=axis, keepdims=True))
    x = jnp.concatenate(bins, axis=axis)
  return x
