"""Drop-in `conv_general_dilated`s for XLA:CPU: `shift_conv` and `row_conv`.

`shift_conv`: convolution by shifted multiply-adds, for layers with very few channels.

XLA:CPU runs a convolution with 3 input and 6 output channels (LeNet-L's C1 at 384x256) at under
10 GFLOP/s. The same sum written as kh * kw * c_in shifted multiply-adds is one vectorised loop,
but only while nothing else joins its fusion: fused with the activation after it, XLA:CPU emits
scalar code (measured 8x slower), and `optimization_barrier` does not stop that on CPU. So the
sum runs one block of output rows at a time under `lax.map`, whose loop body is a computation
of its own (blocks of rows, not images, so that a batch sharded over devices stays sharded).
Measured on this project's 2-core machine, batch 16 at 256x384, 5x5, 3 -> 6 channels: forward
with tanh and 2x2 average pooling 164 -> 69 ms; gradient of the weights through all of it
226 -> 121 ms. `shift_conv` is a drop-in `conv_general_dilated` for
`flax.linen.Conv(conv_general_dilated=shift_conv)`; its gradients are XLA's own convolution
gradients (custom VJP), so only the forward pass changes, equal to float rounding.

`row_conv`, for everything with more channels: in jax 0.10.2 XLA:CPU hands 2-D float32
convolutions with more than 16 input or output channels to YNNPACK, and keeps 1-D ones (and
smaller 2-D ones) for its Eigen convolution, which on this project's 2-core machine is faster
for the same sums (AlexNet conv2-conv5 forward + backward 1.0-1.5x, conv2's input gradient 2.3x;
docs/BENCHMARKS.md, training section). `row_conv` stacks the kh (strided) row windows of the
input on the channel axis, so the 2-D convolution becomes a 1-D convolution along the width over
kh * c_in channels, with the kernel reshaped to match. Batch and output rows merge into the 1-D
batch (batch-major, so a batch sharded over devices stays sharded). Gradients are autodiff's:
the 1-D convolution's own, then a sum of shifted row blocks.
"""

import functools
import itertools
import math
from typing import Any, Sequence

import jax
from jax import lax
import jax.numpy as jnp

from cbir_jax.models import pooling

# Above this many multiply-adds per output element (kh * kw * c_in) `shift_conv` defers to
# lax.conv_general_dilated: the shifted sum only wins for tiny channel counts.
MAX_TERMS = 128
# The forward loop's steps: blocks of output rows (see _shift_conv).
ROW_BLOCKS = 16


def _nhwc_numbers(ndim: int, dimension_numbers: Any) -> bool:
  if dimension_numbers is None or ndim != 4:
    return False
  shape = (1,) * ndim
  return (lax.conv_dimension_numbers(shape, shape, dimension_numbers) ==
          lax.conv_dimension_numbers(shape, shape, ("NHWC", "HWIO", "NHWC")))


def _shifted_sum(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                 out: tuple[int, int]) -> jax.Array:
  """Padded images x (b, h, w, c), HWIO w -> (b, *out, o): the sum of shifted products."""
  window = w.shape[:2]
  acc = None
  for offset in itertools.product(*(range(n) for n in window)):
    index = (slice(None),) + tuple(
        slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, out, strides))
    shifted = x[index]
    for c in range(w.shape[2]):
      term = shifted[..., c:c + 1] * w[offset + (c,)]
      acc = term if acc is None else acc + term
  return acc


def _lax_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shift_conv(x, w, strides, pads):
  x = jnp.pad(x, ((0, 0),) + pads + ((0, 0),))
  (kh, kw), (sh, sw) = w.shape[:2], strides
  oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  # Blocks of output rows, each a loop step reading its rows plus the window's halo. The loop
  # runs over rows, never over the batch, so a batch sharded over devices stays sharded.
  blocks = min(ROW_BLOCKS, oh)
  rows = -(-oh // blocks)
  need = (blocks * rows - 1) * sh + kh
  if need > x.shape[1]:
    x = jnp.pad(x, ((0, 0), (0, need - x.shape[1]), (0, 0), (0, 0)))
  span = (rows - 1) * sh + kh

  def block(i):
    part = lax.dynamic_slice_in_dim(x, i * rows * sh, span, axis=1)
    return _shifted_sum(part, w, strides, (rows, ow))

  out = lax.map(block, jnp.arange(blocks))  # (blocks, b, rows, ow, o)
  out = jnp.moveaxis(out, 0, 1).reshape(x.shape[0], blocks * rows, ow, w.shape[-1])
  return out[:, :oh]


def _shift_conv_fwd(x, w, strides, pads):
  return _shift_conv(x, w, strides, pads), (x, w)


def _shift_conv_bwd(strides, pads, residuals, dy):
  x, w = residuals
  _, vjp = jax.vjp(lambda a, b: _lax_conv(a, b, strides, pads), x, w)
  return vjp(dy)


_shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


def _drop_in(fast):
  """Wraps `fast(lhs, rhs, strides, padding, rhs_dilation) -> array | None` into a drop-in
  `lax.conv_general_dilated` (same arguments) that tries `fast` on the CPU backend for 2-D
  NHWC/HWIO float32 convolutions without input dilation, groups or a preferred element type,
  and runs lax.conv_general_dilated for everything else and wherever `fast` returns None."""

  def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                           padding: Any, lhs_dilation: Sequence[int] | None = None,
                           rhs_dilation: Sequence[int] | None = None,
                           dimension_numbers: Any = None, feature_group_count: int = 1,
                           batch_group_count: int = 1, precision: Any = None,
                           preferred_element_type: Any = None) -> jax.Array:
    if (jax.default_backend() == "cpu" and  # GPUs and TPUs have fast convolutions
        _nhwc_numbers(lhs.ndim, dimension_numbers) and feature_group_count == 1 and
        batch_group_count == 1 and preferred_element_type is None and
        all(d == 1 for d in (lhs_dilation or ())) and lhs.dtype == rhs.dtype == jnp.float32):
      out = fast(lhs, rhs, tuple(int(s) for s in window_strides), padding,
                 tuple(int(d) for d in (rhs_dilation or (1, 1))))
      if out is not None:
        return out
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation,
                                    dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count,
                                    batch_group_count=batch_group_count, precision=precision,
                                    preferred_element_type=preferred_element_type)

  # The drop-in's name and docstring, but its own (lax's) signature: no functools.wraps.
  for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
    setattr(conv_general_dilated, attr, getattr(fast, attr))
  return conv_general_dilated


@_drop_in
def shift_conv(lhs, rhs, strides, padding, dilation):
  """`lax.conv_general_dilated` with the same arguments. On the CPU backend, 2-D NHWC/HWIO
  float32 convolutions without dilation or groups and with at most MAX_TERMS terms per output
  run as shifted multiply-adds (see the module docstring); everything else runs as
  lax.conv_general_dilated.
  Values equal lax's to float32 rounding; gradients are lax's own."""
  if dilation != (1, 1) or math.prod(rhs.shape[:-1]) > MAX_TERMS:
    return None
  pads = pooling.explicit_padding(lhs.shape, rhs.shape[:2], strides, padding)
  return _shift_conv(lhs, rhs, strides, pads)


# `row_conv` runs as a 1-D convolution from this many input channels on (fewer: lax, whose Eigen
# path already serves layers with <= 16 channels, and AlexNet's 3-channel 11x11/4 conv1 measured
# no faster as rows).
ROW_MIN_CHANNELS = 16


def _row_conv(x, w, strides, pads, dilation):
  """NHWC x, HWIO w, explicit non-negative pads: kh row windows on channels, 1-D conv on width."""
  (kh, kw, c_in, c_out), (sh, sw), (dh, dw) = w.shape, strides, dilation
  x = jnp.pad(x, ((0, 0), pads[0], (0, 0), (0, 0)))
  b, height, width, _ = x.shape
  oh = (height - (kh - 1) * dh - 1) // sh + 1
  rows = jnp.concatenate([x[:, i * dh:i * dh + (oh - 1) * sh + 1:sh] for i in range(kh)],
                         axis=-1)  # (b, oh, width, kh * c_in), channel index i * c_in + c
  kernel = jnp.transpose(w, (1, 0, 2, 3)).reshape(kw, kh * c_in, c_out)
  y = lax.conv_general_dilated(rows.reshape(b * oh, width, kh * c_in), kernel, (sw,), (pads[1],),
                               rhs_dilation=(dw,), dimension_numbers=("NWC", "WIO", "NWC"))
  return y.reshape(b, oh, y.shape[1], c_out)


@_drop_in
def row_conv(lhs, rhs, strides, padding, dilation):
  """`lax.conv_general_dilated` with the same arguments. On the CPU backend, 2-D NHWC/HWIO
  float32 convolutions without input dilation or groups, with a window of more than one
  element, at least ROW_MIN_CHANNELS input channels, non-negative padding and a padded input at
  least as large as the (dilated) window run as a 1-D convolution over stacked row windows (see
  the module docstring); everything else runs as lax.conv_general_dilated. Values and gradients
  equal lax's to float32 rounding."""
  if math.prod(rhs.shape[:2]) <= 1 or rhs.shape[2] < ROW_MIN_CHANNELS:
    return None
  window = tuple((k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation))
  pads = pooling.explicit_padding(lhs.shape, window, strides, padding)
  fits = all(n + lo + hi >= k for n, (lo, hi), k in zip(lhs.shape[1:3], pads, window))
  if not fits or min(itertools.chain(*pads)) < 0:
    return None
  return _row_conv(lhs, rhs, strides, pads, dilation)
