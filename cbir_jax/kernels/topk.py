"""Exact streaming k-smallest selection with the lower-index-first tie rule."""

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

# Key of an excluded slot (padding, overlap, rows beyond the valid count). Every real key is
# smaller: float keys are at most CANONICAL_NAN_KEY, Hamming keys at most 32 * words. Slots already
# taken by `smallest_k` are marked with the even larger TAKEN_KEY, so every pick is distinct.
TAKEN_KEY = np.int32(np.iinfo(np.int32).max)
PAD_KEY = np.int32(np.iinfo(np.int32).max - 1)
INF_KEY = np.int32(0x7F800000)
CANONICAL_NAN_KEY = np.int32(0x7FC00000)
# Default budget, in bytes, of the largest per-chunk array a kernel stores: the (q, chunk) float32
# products for GEMM Hamming, or the (q, chunk / window) window minima for popcount Hamming, whose
# distances are never stored. Euclidean uses its own, larger euclidean.BLOCK_BYTES.
DEFAULT_BLOCK_BYTES = 16 * 2**20
DEFAULT_WINDOW = 32
# Windows are grouped GROUP at a time into a hierarchy of minima (see `smallest_windows`), and
# automatic chunk lengths are multiples of window * GROUP**2 so that at least two levels exist.
GROUP = 8
# Up to this k, `smallest_k` extracts minima one by one (k cheap passes; `lax.top_k` and sorting
# are an order of magnitude slower on CPU); above it, it sorts.
ITERATIVE_MAX_K = 64
# Up to this k the rounds are unrolled (no while-loop overhead per round; more to compile).
UNROLL_MAX_K = 16


def check_k(k: int, n: int) -> int:
  """Returns k as an int; ValueError naming k and n when k is outside [1, n] or n is 0."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise TypeError(f"k must be an int, got {k!r}")
  if n < 1:
    raise ValueError(f"the database is empty (n = {n}); add vectors before searching")
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}] (n = database size), got k = {k}")
  return int(k)


def check_method(method: str, methods: tuple[str, ...]) -> str:
  """Returns `method`; ValueError naming the choices when it is not one of `methods`."""
  if method not in methods:
    raise ValueError(f"method must be one of {methods}, got {method!r}")
  return method


def resolve_chunk(chunk_size: int | None, n: int, num_queries: int, window: int,
                  rows_per_element: int = 1, block_bytes: int = DEFAULT_BLOCK_BYTES,
                  k: int | None = None) -> int:
  """Static chunk length: `chunk_size`, or what makes a (q, chunk / rows_per_element) 4-byte
  array of `block_bytes` (rounded down to a multiple of window * GROUP**2, so that
  `smallest_windows` gets two levels of group minima, when that is at least one such unit); at
  most n, and rounded down to a multiple of `window` when >= window.

  By default, when `k` is given and at least half of n (a full or near-full ranking, as
  evaluations ask for), the whole database is one chunk: the (q, k) result is then already at
  least half the size of the (q, n) block, so streaming bounds no memory, while each streamed
  chunk would re-sort the (q, k) running list (n = 50,000, k = n: ~25 sorts of 52,000 keys per
  query instead of one)."""
  if chunk_size is None and k is not None and 2 * int(k) >= n:
    return int(n)
  if chunk_size is None:
    chunk = block_bytes // (4 * max(num_queries, 1)) * rows_per_element
    unit = window * GROUP**2 if window > 1 else 1
    if chunk < unit:
      unit = max(window, 1)
    chunk = max(window * 8, chunk // unit * unit)
    if chunk < n:
      # Balance the chunks: the last one overlaps its predecessor, and the overlap is scored for
      # nothing (N = 100k, 16,384-row chunks: 7 of them, 15 % extra work; 14,336 rows: 0.4 %).
      per_step = -(-n // -(-n // chunk))  # ceil(n / number of chunks)
      chunk = min(chunk, -(-per_step // unit) * unit)
  else:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
      raise TypeError(f"chunk_size must be an int or None, got {chunk_size!r}")
    if chunk_size < 1:
      raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk = int(chunk_size)
  chunk = min(chunk, n)
  if window > 1 and chunk >= window:
    chunk -= chunk % window
  return chunk


def varying_axes(*trees: Any) -> tuple[str, ...]:
  """Sorted mesh axes along which any array (or ShapeDtypeStruct) in `trees` varies.

  Inside a `shard_map` with `check_vma=True` every value carries the set of manual mesh axes it
  varies along; outside one (or with `check_vma=False`) the set is empty.
  """
  axes = set()
  for leaf in jax.tree.leaves(trees):
    aval = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else jax.typeof(leaf)
    axes |= set(getattr(getattr(aval, "manual_axis_type", None), "varying", ()) or ())
  return tuple(sorted(axes))


def cast_varying(tree: Any, axes: tuple[str, ...]) -> Any:
  """`tree` with every array made varying along `axes` (those it does not vary along yet)."""
  def cast(x):
    missing = tuple(a for a in axes if a not in varying_axes(x))
    return jax.lax.pcast(x, missing, to="varying") if missing else x
  return jax.tree.map(cast, tree) if axes else tree


def loop_init(body: Any, init: Any) -> Any:
  """`init` typed for `lax.fori_loop(lower, upper, body, init)` inside any user's shard_map.

  A fresh constant varies along no mesh axis, but one step of the loop makes the carry vary
  along every axis its inputs vary along (a database shard varies along the axis it is sharded
  over), and a loop needs equal carry types in and out. The carry's type after one step is
  found abstractly (`jax.eval_shape`, nothing computed) and `init` is cast to it, so the carries
  are typed from the inputs wherever the kernels are traced: plain `jit`, `vmap`, `shard_map`
  with `check_vma` on or off.
  """
  out = jax.eval_shape(lambda c: body(0, c), init)
  return cast_varying(init, varying_axes(out, init))


def float_keys(distances: jax.Array) -> jax.Array:
  """Maps float32 distances to int32 keys with the same order.

  Negative values (rounding of squared L2) become 0 and -0.0 becomes 0.0; +inf ranks after every
  finite value and NaN (any payload or sign) after +inf. `keys_to_float` inverts it.
  """
  d = jnp.where(distances < 0, jnp.float32(0), distances.astype(jnp.float32))
  keys = jax.lax.bitcast_convert_type(d, jnp.int32) & jnp.int32(0x7FFFFFFF)
  return jnp.where(keys > INF_KEY, CANONICAL_NAN_KEY, keys)


def keys_to_float(keys: jax.Array) -> jax.Array:
  """Inverse of `float_keys` on real keys: int32 -> float32 distances (NaN for the NaN key)."""
  return jax.lax.bitcast_convert_type(keys, jnp.float32)


def smallest_k(keys: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """k smallest of int32 keys (..., m) along the last axis, ties to the lower position.

  Keys must be below TAKEN_KEY. Returns (keys (..., k) ascending, positions (..., k) int32,
  distinct). The tie rule is exact by construction: k rounds of (minimum, lowest position holding
  it) for small k, else a lexicographic sort on (key, position).
  """
  m = keys.shape[-1]
  pos = jax.lax.broadcasted_iota(jnp.int32, keys.shape, keys.ndim - 1)
  if k > ITERATIVE_MAX_K:
    sorted_keys, sorted_pos = jax.lax.sort((keys, pos), dimension=keys.ndim - 1, num_keys=2)
    return sorted_keys[..., :k], sorted_pos[..., :k]

  if k <= UNROLL_MAX_K:
    # Unrolled: each round is one fused masked argmin (first occurrence = lowest position).
    taken = jnp.zeros(keys.shape, bool)
    out_keys, out_pos = [], []
    for _ in range(k):
      masked = jnp.where(taken, TAKEN_KEY, keys)
      at = jnp.argmin(masked, axis=-1).astype(jnp.int32)
      out_pos.append(at)
      out_keys.append(jnp.take_along_axis(masked, at[..., None], axis=-1)[..., 0])
      taken = taken | (pos == at[..., None])
    return jnp.stack(out_keys, axis=-1), jnp.stack(out_pos, axis=-1)

  def body(i, carry):
    keys, out_keys, out_pos = carry
    best = keys.min(axis=-1)
    at = jnp.where(keys == best[..., None], pos, m).min(axis=-1)
    keys = jnp.where(pos == at[..., None], TAKEN_KEY, keys)
    out_keys = jax.lax.dynamic_update_index_in_dim(out_keys, best, i, axis=keys.ndim - 1)
    out_pos = jax.lax.dynamic_update_index_in_dim(out_pos, at, i, axis=keys.ndim - 1)
    return keys, out_keys, out_pos

  out = jnp.zeros(keys.shape[:-1] + (k,), jnp.int32)
  _, out_keys, out_pos = jax.lax.fori_loop(0, k, body, loop_init(body, (keys, out, out)))
  return out_keys, out_pos


def smallest_windows(minima: jax.Array, k: int, group: int = GROUP) -> jax.Array:
  """Positions (q, k), ascending, of the k windows ranked first by (minimum, position).

  Exact and cheaper than `smallest_k` on all of `minima` (q, m): consecutive windows are grouped
  `group` at a time into levels of minima while a level keeps at least 2 * k groups; the k first
  groups of the top level are ranked, and each level below ranks only the k * group members of
  the k groups chosen above it. Exact because a group ranked after k others has each of their
  minima, hence one member of each, before every one of its own members under the
  (minimum, position) order, consecutive groups keeping position order.
  """
  levels = [minima]
  while (levels[-1].shape[-1] % group == 0 and levels[-1].shape[-1] // group >= 2 * k):
    top = levels[-1]
    levels.append(top.reshape(top.shape[:-1] + (top.shape[-1] // group, group)).min(axis=-1))
  _, chosen = smallest_k(levels[-1], k)
  chosen = jnp.sort(chosen, axis=-1)
  members = jnp.arange(group, dtype=jnp.int32)
  for level in reversed(levels[:-1]):
    cand = (chosen[..., None] * group + members).reshape(chosen.shape[:-1] + (k * group,))
    _, at = smallest_k(jnp.take_along_axis(level, cand, axis=-1), k)
    chosen = jnp.sort(jnp.take_along_axis(cand, at, axis=-1), axis=-1)
  return chosen


def is_windowed(chunk: int, window: int, k: int) -> bool:
  """Whether `stream_topk` uses two-stage window selection for these static sizes."""
  return window > 1 and chunk % window == 0 and 2 * k * window <= chunk


class ChunkScorer(Protocol):
  """How a metric scores one database chunk; see `stream_topk`."""

  def prepare(self, start: jax.Array, chunk: int) -> Any:
    """Work shared by both stages for rows [start, start + chunk) (e.g. the q.x products)."""

  def keys(self, aux: Any) -> jax.Array:
    """(q, chunk) int32 keys of the whole chunk; written so XLA can fuse it into a reduction."""

  def keys_at(self, aux: Any, pos: jax.Array) -> jax.Array:
    """(q, m) int32 keys at chunk positions pos (q, m) in [0, chunk); bitwise equal to `keys`."""

  # Optional: window_minima(aux, valid (chunk,) bool, window) -> (q, chunk // window) int32, the
  # minimum key of each window of `window` consecutive rows with invalid rows as PAD_KEY, for
  # scorers whose products are laid out so that another reduction is faster.


def stream_topk(scorer: ChunkScorer, *, num_queries: int, n: int, k: int, chunk: int,
                window: int, n_valid: jax.Array | int | None = None,
                offset: jax.Array | int = 0) -> tuple[jax.Array, jax.Array]:
  """Running exact top-k over a database streamed in chunks, with two-stage selection.

  Per chunk: window minima of the keys (one fused pass; the (q, chunk) keys are never stored for
  the windowed path), the k windows ranked first by (minimum, window position) (found through a
  hierarchy of group minima, `smallest_windows`), their k * window
  candidates rescored by `scorer.keys_at` in ascending position order, then merged with the
  running top-k. Exact: a window ranked after those k has each of their minima before every one
  of its own elements under the (key, index) order. Without windows (window <= 1 or a chunk under
  2 * k * window rows) the whole chunk is ranked directly.

  Args:
    scorer: the metric's ChunkScorer.
    num_queries: q.
    n: database rows (static), n >= chunk >= 1.
    k: results per query, 1 <= k.
    chunk: rows per step (static); the last step starts at n - chunk and masks rows seen already.
    window: rows per window; the windowed path needs chunk % window == 0.
    n_valid: rows at or beyond this count are excluded (traced allowed); default n.
    offset: added to returned indices (traced allowed), e.g. a shard's first global row.

  Returns:
    (keys (q, k) int32 ascending, indices (q, k) int32); ties (equal keys) go to the lower index.
    Slots that found no valid row hold PAD_KEY. Memory: O(q * chunk) beyond the inputs.
  """
  num_chunks = -(-n // chunk)
  windowed = is_windowed(chunk, window, k)
  positions = jnp.arange(chunk, dtype=jnp.int32)

  def valid_at(pos, start, j):
    rows = start + pos
    ok = rows >= j * chunk
    if n_valid is not None:
      ok = ok & (rows < n_valid)
    return ok

  def body(j, carry):
    run_keys, run_idx = carry
    start = jnp.minimum(j * chunk, n - chunk).astype(jnp.int32)
    aux = scorer.prepare(start, chunk)
    valid = valid_at(positions, start, j)
    if windowed:
      if hasattr(scorer, "window_minima"):
        minima = scorer.window_minima(aux, valid, window)
      else:
        keys = jnp.where(valid[None, :], scorer.keys(aux), PAD_KEY)
        minima = keys.reshape(num_queries, chunk // window, window).min(axis=-1)
      win = smallest_windows(minima, k)
      cand = (win[:, :, None] * window + jnp.arange(window, dtype=jnp.int32)).reshape(
          num_queries, k * window)
      cand_keys = jnp.where(valid_at(cand, start, j), scorer.keys_at(aux, cand), PAD_KEY)
    else:
      cand = jnp.broadcast_to(positions, (num_queries, chunk))
      cand_keys = jnp.where(valid[None, :], scorer.keys(aux), PAD_KEY)
    # Earlier chunks hold lower indices and come first, so position order is index order.
    all_keys = jnp.concatenate([run_keys, cand_keys], axis=-1)
    all_idx = jnp.concatenate([run_idx, cand + start], axis=-1)
    best, at = smallest_k(all_keys, k)
    return best, jnp.take_along_axis(all_idx, at, axis=-1)

  init = (jnp.full((num_queries, k), PAD_KEY, jnp.int32),
          jnp.zeros((num_queries, k), jnp.int32))
  keys, idx = jax.lax.fori_loop(0, num_chunks, body, loop_init(body, init))
  return keys, idx + jnp.asarray(offset, jnp.int32)


def merge_sorted_parts(keys: jax.Array, idx: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Merges per-part lists (parts, q, m), parts in ascending index order, each sorted by
  (key, index) -> the k smallest (q, k), ties to the lower index; parts * m >= k."""
  parts, q, m = keys.shape
  flat_keys = jnp.transpose(keys, (1, 0, 2)).reshape(q, parts * m)
  flat_idx = jnp.transpose(idx, (1, 0, 2)).reshape(q, parts * m)
  best, at = smallest_k(flat_keys, k)
  return best, jnp.take_along_axis(flat_idx, at, axis=-1)
