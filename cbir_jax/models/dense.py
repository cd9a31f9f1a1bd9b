"""CPU formulation of `dot_general` for Dense layers: `dense_dot_general`.

A drop-in `lax.dot_general` for `flax.linen.Dense(dot_general=...)`. Lowered for the CPU, a
float32 (batch, in) x (in, out) product runs as a 1-D convolution of width 1 (XLA:CPU's Eigen
contraction instead of its YNNPACK matrix product, faster for AlexNet's fc6-fc8 on small CPUs:
docs/BENCHMARKS.md, "CPU formulations of models/conv.py and models/dense.py"), and its input
gradient as one more with the kernel as the input (w (in, 1, out) against dy^T); the weight
gradient stays a dot. Lowered for a GPU or TPU it is lax.dot_general. The choice is made per
lowering by `lax.platform_dependent`, as in `models/conv.py`.
"""

from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

_NWC = ("NWC", "WIO", "NWC")


def _width_one_conv(lhs, rhs):
  """(b, k) x (k, o) -> (b, o) as a 1-D convolution of width 1."""
  return lax.conv_general_dilated(lhs[:, None], rhs[None], (1,), "VALID",
                                  dimension_numbers=_NWC)[:, 0]


@jax.custom_vjp
def _conv_dense(x, w):
  return _width_one_conv(x, w)


def _conv_dense_fwd(x, w):
  return _width_one_conv(x, w), (x, w)


def _conv_dense_bwd(residuals, dy):
  x, w = residuals
  dx = _width_one_conv(w, dy.T).T  # w @ dy^T: the kernel streamed as the convolution's input
  dw = lax.dot_general(x, dy, (((0,), (0,)), ((), ())))
  return dx, dw


_conv_dense.defvjp(_conv_dense_fwd, _conv_dense_bwd)


def dense_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any,
                      precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
  """`lax.dot_general` with the same arguments. Lowered for the CPU, a float32 (b, k) x (k, o)
  product (what `flax.linen.Dense` asks for on 2-D inputs) runs as a 1-D convolution of width
  one, with a custom backward pass (see the module docstring); lowered for anything else, and
  for every other product, it is lax.dot_general. Values and gradients equal lax's to float32
  rounding."""
  def dot(lhs, rhs):
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)

  numbers = tuple(tuple(tuple(int(d) for d in dims) for dims in part)
                  for part in dimension_numbers)
  if (lhs.ndim == rhs.ndim == 2 and numbers == (((1,), (0,)), ((), ())) and
      preferred_element_type is None and lhs.dtype == rhs.dtype == jnp.float32):
    return lax.platform_dependent(lhs, rhs, cpu=_conv_dense, default=dot)
  return dot(lhs, rhs)
