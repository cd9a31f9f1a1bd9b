"""CPU formulations of `conv_general_dilated`: `shift_conv`, `row_conv` and `winograd_conv`.

Each is a drop-in `lax.conv_general_dilated` for `flax.linen.Conv(conv_general_dilated=...)`:
same arguments, same values and gradients to float32 rounding, same parameters. Each chooses its
formulation by the LOWERING platform (`lax.platform_dependent`, as `kernels.euclidean` does):
lowered for the CPU, a convolution it serves runs as below; lowered for a GPU or TPU (or any
convolution outside its range) it is lax's own convolution. The choice is made per lowering, so
a function traced on one host and lowered or exported for another gets that platform's code.
Measurements behind each choice: docs/BENCHMARKS.md, "CPU formulations of models/conv.py and
models/dense.py" and the training sections it points to.

`shift_conv`: convolution by shifted multiply-adds, for layers with very few channels (LeNet-L's
C1: 3 -> 6 channels, 5x5), which XLA:CPU's convolution runs slowly. The sum, kh * kw * c_in
shifted multiply-adds, is one vectorised loop only while nothing else joins its fusion (fused
with the activation after it, XLA:CPU emits scalar code, and `optimization_barrier` does not stop
that on CPU), so it runs one block of output rows at a time under `lax.map`, whose loop body is a
computation of its own (blocks of rows, not images, so that a batch sharded over devices stays
sharded). Its gradients are XLA's own convolution gradients (custom VJP).

`row_conv`, for everything with more channels: XLA:CPU hands 2-D float32 convolutions with more
than 16 input or output channels to YNNPACK and keeps 1-D ones for its Eigen convolution, which
is faster for the same sums on small CPUs. `row_conv` stacks the kh (strided) row windows of the
input on the channel axis, so the 2-D convolution becomes a 1-D convolution along the width over
kh * c_in channels, with the kernel reshaped to match. Batch and output rows merge into the 1-D
batch (batch-major, so a batch sharded over devices stays sharded). Gradients are autodiff's:
the 1-D convolution's own, then a sum of shifted row blocks.

`winograd_conv`, for stride-1 3x3 and 5x5 windows with >= 16 input channels (AlexNet conv2-conv5;
everything else goes on to `row_conv`): Winograd's minimal filtering F(m x m, r x r) (Lavin &
Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). The padded input is cut into
overlapping n x n tiles (n = m + r - 1, stride m), each tile and the kernel are transformed
(B^T d B, G g G^T: sums of strided slices, elementwise), the n * n transformed planes are
multiplied as one batched matrix product (planes, tiles, c_in) x (planes, c_in, c_out), and each
product tile maps back to an m x m output tile (A^T M A). F(2x2, 3x3) needs 16 products per 4
outputs instead of 36, F(3x3, 5x5) 49 per 9 instead of 225. The backward pass is written out
(custom VJP) and reuses the transformed output gradient (dy planes): the weight gradient is one
batched product planes^T x dy planes (contracting over tiles) and the transposed kernel
transform, the input gradient one batched product dy planes x kernel planes^T and the transposed
input transform (overlapping tiles summed).
Tiles are batch-major on the products' row axis, so a batch sharded over devices stays sharded.
Values and gradients equal lax's up to the transforms' float32 rounding: relative to the largest
magnitude, ~1e-6 for F(2x2, 3x3) (like lax's own) and ~1e-5 for F(3x3, 5x5).

The Dense-layer counterpart, `dense_dot_general`, is in `models/dense.py`.
"""

import fractions
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


def _drop_in(plan):
  """Wraps `plan(lhs, rhs, strides, padding, rhs_dilation) -> fn(lhs, rhs) | None` into a
  drop-in `lax.conv_general_dilated` (same arguments). For 2-D NHWC/HWIO float32 convolutions
  without input dilation, groups or a preferred element type, `plan` looks at the shapes (at
  trace time) and returns the CPU formulation or None; where it returns one, the convolution is
  `lax.platform_dependent(lhs, rhs, cpu=fn, default=<lax's convolution>)`, chosen when the
  program is lowered. Everything else is lax.conv_general_dilated."""

  def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                           padding: Any, lhs_dilation: Sequence[int] | None = None,
                           rhs_dilation: Sequence[int] | None = None,
                           dimension_numbers: Any = None, feature_group_count: int = 1,
                           batch_group_count: int = 1, precision: Any = None,
                           preferred_element_type: Any = None) -> jax.Array:
    def lax_conv(lhs, rhs):
      return lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                                      dimension_numbers=dimension_numbers,
                                      feature_group_count=feature_group_count,
                                      batch_group_count=batch_group_count, precision=precision,
                                      preferred_element_type=preferred_element_type)

    if (_nhwc_numbers(lhs.ndim, dimension_numbers) and feature_group_count == 1 and
        batch_group_count == 1 and preferred_element_type is None and
        all(d == 1 for d in (lhs_dilation or ())) and lhs.dtype == rhs.dtype == jnp.float32):
      cpu = plan(lhs, rhs, tuple(int(s) for s in window_strides), padding,
                 tuple(int(d) for d in (rhs_dilation or (1, 1))))
      if cpu is not None:
        # GPUs and TPUs have fast convolutions: lax's own there.
        return lax.platform_dependent(lhs, rhs, cpu=cpu, default=lax_conv)
    return lax_conv(lhs, rhs)

  # The drop-in's name and docstring, but its own (lax's) signature: no functools.wraps.
  for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
    setattr(conv_general_dilated, attr, getattr(plan, attr))
  conv_general_dilated.plan = plan  # for drop-ins that defer to another one's CPU formulation
  return conv_general_dilated


@_drop_in
def shift_conv(lhs, rhs, strides, padding, dilation):
  """`lax.conv_general_dilated` with the same arguments. Lowered for the CPU, 2-D NHWC/HWIO
  float32 convolutions without dilation or groups and with at most MAX_TERMS terms per output
  run as shifted multiply-adds (see the module docstring); everything else runs as
  lax.conv_general_dilated.
  Values equal lax's to float32 rounding; gradients are lax's own."""
  if dilation != (1, 1) or math.prod(rhs.shape[:-1]) > MAX_TERMS:
    return None
  pads = pooling.explicit_padding(lhs.shape, rhs.shape[:2], strides, padding)
  return lambda x, w: _shift_conv(x, w, strides, pads)


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
  """`lax.conv_general_dilated` with the same arguments. Lowered for the CPU, 2-D NHWC/HWIO
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
  return lambda x, w: _row_conv(x, w, strides, pads, dilation)


# `winograd_conv`'s output tile (m x m) per square window (r x r): F(2x2, 3x3) on 4x4 input tiles,
# F(3x3, 5x5) on 7x7 ones. Larger tiles save more multiplications but lose float32 accuracy.
WINOGRAD_TILES = {3: 2, 5: 3}
# Toom-Cook interpolation points, taken in this order (plus the point at infinity).
_POINTS = (0, 1, -1, 2, -2, fractions.Fraction(1, 2), fractions.Fraction(-1, 2))


def _inverse(matrix):
  """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
  n = len(matrix)
  rows = [list(row) + [fractions.Fraction(int(i == j)) for j in range(n)]
          for i, row in enumerate(matrix)]
  for col in range(n):
    pivot = next(r for r in range(col, n) if rows[r][col] != 0)
    rows[col], rows[pivot] = rows[pivot], rows[col]
    rows[col] = [v / rows[col][col] for v in rows[col]]
    for r in range(n):
      if r != col and rows[r][col] != 0:
        rows[r] = [a - rows[r][col] * b for a, b in zip(rows[r], rows[col])]
  return [row[n:] for row in rows]


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int, r: int):
  """Exact (A^T, B^T, G) of the 1-D Winograd correlation F(m, r) (Lavin & Gray, 2016), as tuples
  of Fractions: for a length n = m + r - 1 input d and an r-tap filter g,
  y = A^T [(G g) * (B^T d)] with y_i = sum_k g_k d_(i + k), i < m. Toom-Cook on _POINTS[:n - 1]
  and infinity: linear convolution is V^-1 diag(Vr g) Vm h with Vandermonde matrices V (n x n),
  Vr (n x r), Vm (n x m), and correlation is its transpose in h: A^T = Vm^T, B^T = V^-T, G = Vr,
  each row of B^T scaled to integers and the row of G divided by the same factor."""
  n = m + r - 1
  if n - 1 > len(_POINTS):
    raise ValueError(f"no interpolation points for F({m}, {r})")
  points = [fractions.Fraction(p) for p in _POINTS[:n - 1]]

  def vandermonde(k):
    return ([[p ** i for i in range(k)] for p in points] +
            [[fractions.Fraction(int(i == k - 1)) for i in range(k)]])

  vn, vr, vm = vandermonde(n), vandermonde(r), vandermonde(m)
  a_t = [[vm[j][i] for j in range(n)] for i in range(m)]
  inv = _inverse(vn)
  b_t = [[inv[l][j] for l in range(n)] for j in range(n)]
  g = [list(row) for row in vr]
  for j in range(n):
    scale = math.lcm(*(v.denominator for v in b_t[j]))
    b_t[j] = [v * scale for v in b_t[j]]
    g[j] = [v / scale for v in g[j]]
  return tuple(map(tuple, a_t)), tuple(map(tuple, b_t)), tuple(map(tuple, g))


def _combine(coefficients, terms):
  """sum_i c_i * terms[i] for float32 arrays, skipping zero coefficients, no multiply for +-1."""
  out = None
  for c, term in zip(coefficients, terms):
    if c == 0:
      continue
    if abs(c) != 1:
      term = term * jnp.float32(abs(c))
    if out is None:
      out = term if c > 0 else -term
    else:
      out = out + term if c > 0 else out - term
  return jnp.zeros_like(terms[0]) if out is None else out


def _tile_transform(x, t, m, tiles):
  """x (b, H, W, c) -> (n * n, b * th * tw, c) for an n x k matrix t: plane (p, q) at tile (i, j)
  is sum_(u, v < k) t[p][u] t[q][v] x[:, m i + u, m j + v]. Two passes (rows, then columns)."""
  (th, tw), n, k = tiles, len(t), len(t[0])
  b, c = x.shape[0], x.shape[-1]
  rows = [x[:, u:u + (th - 1) * m + 1:m] for u in range(k)]
  by_rows = jnp.stack([_combine(t[p], rows) for p in range(n)])  # (n, b, th, W, c)
  cols = [by_rows[:, :, :, v:v + (tw - 1) * m + 1:m] for v in range(k)]
  planes = jnp.stack([_combine(t[q], cols) for q in range(n)], axis=1)  # (n, n, b, th, tw, c)
  return planes.reshape(n * n, b * th * tw, c)


def _scatter_tiles(planes, t, m, tiles, batch):
  """The transpose of `_tile_transform`: (n * n, b * th * tw, c) -> (b, H, W, c) with
  H = (th - 1) * m + k (k = len(t[0])), tile (i, j) at (u, v) < k adding
  sum_(p, q) t[p][u] t[q][v] plane (p, q) into [m i + u, m j + v] (overlapping tiles sum)."""
  (th, tw), n, k = tiles, len(t), len(t[0])
  planes = planes.reshape(n, n, batch, th, tw, planes.shape[-1])

  def overlap_add(parts, axis):  # parts[u]'s tile i at m * i + u along `axis`, summed
    # Phase e < m of the output (positions m * i + e) sums parts[m * q + e] shifted by q tiles
    # (k >= m, so every phase has at least parts[e]).
    shifts = -(-k // m)
    phases = []
    for e in range(m):
      terms = []
      for q in range(shifts if m * (shifts - 1) + e < k else shifts - 1):
        config = [(0, 0)] * parts[0].ndim
        config[axis] = (q, shifts - 1 - q)
        terms.append(jnp.pad(parts[m * q + e], config))
      phases.append(sum(terms[1:], terms[0]))
    out = jnp.stack(phases, axis=axis + 1)  # (..., tiles + shifts - 1, m, ...)
    out = out.reshape(out.shape[:axis] + (-1,) + out.shape[axis + 2:])
    return lax.slice_in_dim(out, 0, (parts[0].shape[axis] - 1) * m + k, axis=axis)

  cols = [_combine([t[q][v] for q in range(n)], [planes[:, q] for q in range(n)])
          for v in range(k)]  # (n, b, th, tw, c) each
  by_rows = overlap_add(cols, 3)  # (n, b, th, W, c)
  rows = [_combine([t[p][u] for p in range(n)], [by_rows[p] for p in range(n)])
          for u in range(k)]  # (b, th, W, c) each
  return overlap_add(rows, 1)


def _kernel_transform(w, g):
  """HWIO w (r, r, i, o) -> (n * n, i, o): plane (p, q) is sum_(u, v) g[p][u] g[q][v] w[u, v]."""
  r, n = w.shape[0], len(g)
  by_rows = [_combine(g[p], [w[u] for u in range(r)]) for p in range(n)]  # each (r, i, o)
  return jnp.stack([_combine(g[q], [by_rows[p][v] for v in range(r)])
                    for p in range(n) for q in range(n)])


def _untile(planes, a_t, batch, tiles):
  """(n * n, b * th * tw, o) -> (b, th * m, tw * m, o): tile (i, j) at (u, v) < m is
  sum_(p, q) a_t[u][p] a_t[v][q] plane (p, q) at (i, j)."""
  (th, tw), m, n = tiles, len(a_t), len(a_t[0])
  planes = planes.reshape(n, n, batch, th, tw, planes.shape[-1])
  by_rows = [_combine(a_t[u], [planes[p] for p in range(n)]) for u in range(m)]  # (n, b, th, tw, o)
  out = jnp.stack([jnp.stack([_combine(a_t[v], [by_rows[u][q] for q in range(n)])
                              for v in range(m)], axis=-2) for u in range(m)], axis=2)
  return out.reshape(batch, th * m, tw * m, out.shape[-1])  # out: (b, th, m, tw, m, o)


def _winograd_forward(x, w, pads, m):
  """(y, input planes): the stride-1 correlation of NHWC x and HWIO w (r x r) with explicit
  non-negative pads, by F(m x m, r x r) tiles."""
  r = w.shape[0]
  a_t, b_t, g = (_floats(v) for v in winograd_matrices(m, r))
  oh, ow = (x.shape[d] + sum(pads[d - 1]) - r + 1 for d in (1, 2))
  tiles = (-(-oh // m), -(-ow // m))
  x = jnp.pad(x, ((0, 0),) + tuple(
      (lo, n * m + r - 1 - size - lo) for (lo, _), n, size in zip(pads, tiles, x.shape[1:3])) +
              ((0, 0),))
  planes = _tile_transform(x, b_t, m, tiles)
  products = lax.dot_general(planes, _kernel_transform(w, g), (((2,), (1,)), ((0,), (0,))))
  return _untile(products, a_t, x.shape[0], tiles)[:, :oh, :ow], planes


def _floats(matrix):
  return tuple(tuple(float(v) for v in row) for row in matrix)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _winograd_conv(x, w, pads, m):
  return _winograd_forward(x, w, pads, m)[0]


def _winograd_conv_fwd(x, w, pads, m):
  y, planes = _winograd_forward(x, w, pads, m)
  return y, (x.shape, w, planes)


def _winograd_conv_bwd(pads, m, residuals, dy):
  x_shape, w, planes = residuals
  r = w.shape[0]
  a_t, b_t, g = (_floats(v) for v in winograd_matrices(m, r))
  n = m + r - 1
  batch, oh, ow, _ = dy.shape
  tiles = (-(-oh // m), -(-ow // m))
  # Weights: the transpose of the forward's untile and kernel transform around the per-plane
  # product planes^T @ dy_planes (contracting over tiles, so a batch-sharded input gives partial
  # sums like any weight gradient).
  dy_tiles = jnp.pad(dy, ((0, 0), (0, tiles[0] * m - oh), (0, tiles[1] * m - ow), (0, 0)))
  dy_planes = _tile_transform(dy_tiles, tuple(zip(*a_t)), m, tiles)  # (n * n, N, o)
  dk = lax.dot_general(planes, dy_planes, (((1,), (1,)), ((0,), (0,))))  # (n * n, i, o)
  dk = dk.reshape(n, n, *dk.shape[1:])
  g_t = tuple(zip(*g))
  by_rows = [_combine(g_t[u], [dk[p] for p in range(n)]) for u in range(r)]  # (n, i, o)
  dw = jnp.stack([jnp.stack([_combine(g_t[v], [by_rows[u][q] for q in range(n)])
                             for v in range(r)]) for u in range(r)])
  # Input: the transposed input transform (overlapping tiles summed) of the per-plane products
  # dy_planes @ kernel_planes^T, cropped to the unpadded input.
  kernel = _kernel_transform(w, g)
  d_planes = lax.dot_general(dy_planes, kernel, (((2,), (2,)), ((0,), (0,))))  # (n * n, N, i)
  dx = _scatter_tiles(d_planes, b_t, m, tiles, batch)
  (top, _), (left, _) = pads
  dx = dx[:, top:top + x_shape[1], left:left + x_shape[2]]
  return dx, dw


_winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


@_drop_in
def winograd_conv(lhs, rhs, strides, padding, dilation):
  """`lax.conv_general_dilated` with the same arguments. Lowered for the CPU, 2-D NHWC/HWIO
  float32 convolutions with stride 1, no dilation or groups, a square window of a size in
  WINOGRAD_TILES, at least ROW_MIN_CHANNELS input channels, non-negative padding and a padded
  input at least as large as the window run as Winograd F(m x m, r x r) convolutions (see the
  module docstring); everything else is `row_conv`. Values and gradients equal lax's to the
  float32 rounding of the transforms (relative error ~1e-6 for 3x3, ~1e-5 for 5x5)."""
  r = rhs.shape[0]
  if (strides != (1, 1) or dilation != (1, 1) or rhs.shape[1] != r or r not in WINOGRAD_TILES or
      rhs.shape[2] < ROW_MIN_CHANNELS):
    return row_conv.plan(lhs, rhs, strides, padding, dilation)
  pads = pooling.explicit_padding(lhs.shape, (r, r), strides, padding)
  if (min(itertools.chain(*pads)) < 0 or
      any(n + lo + hi < r for n, (lo, hi) in zip(lhs.shape[1:3], pads))):
    return row_conv.plan(lhs, rhs, strides, padding, dilation)
  m = WINOGRAD_TILES[r]
  return lambda x, w: _winograd_conv(x, w, pads, m)
