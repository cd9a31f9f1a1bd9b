"""Query expansion (alpha-QE) and database-side augmentation (DBA) on the Euclidean kernel.

Both re-describe a vector by the weighted sum of its nearest database neighbours, the two
classic label-free re-ranking steps of image retrieval:
- alpha-QE (Radenovic, Tolias and Chum, "Fine-tuning CNN image retrieval with no human
  annotation", TPAMI 2019): q' = unit(unit(q) + sum_{i<k} w_i unit(x_{n_i})) over the query's k
  nearest database rows; alpha = 0 is average query expansion (Chum et al., ICCV 2007).
- DBA (Arandjelovic and Zisserman, CVPR 2012; Gordo et al., IJCV 2017): every database row
  becomes x' = unit(sum_{i<k} w_i unit(x_{n_i})) over its k nearest database rows, itself
  included (normally first, with weight 1).
with w_i = max(s_i, 0) ** alpha and s_i = unit(q) . unit(x_{n_i}) the cosine similarity. The
vectors are L2-normalised first (on unit vectors the Euclidean ranking is the cosine ranking);
the results are unit vectors (a zero row stays zero), to be searched with `euclidean_topk`.
Search the expanded queries against the augmented database when both are used.

Pure and jit-able like `euclidean_topk` (`k`, `alpha`, `chunk_size` and `method` are static):
neighbours come from its streaming top-k, and the weighted sum is accumulated one neighbour
rank at a time, so memory beyond the inputs is O(q * d + q * k) plus the search's own.
Non-finite input: a row with NaN or inf yields a NaN row; a non-finite neighbour (or a NaN
similarity) contributes nothing to the other rows.
"""

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from cbir_jax.kernels import euclidean
from cbir_jax.kernels import topk as topk_lib


def _unit(x: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm; a zero row stays zero, a NaN / inf row comes out with NaN."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
  return x / jnp.where(norm > 0, norm, 1.0)


@jax.jit
def unit_rows(x: Any) -> jax.Array:
  """Rows scaled to unit L2 norm in float32 (the vectors both expansions start from; what
  `database_augmentation` with k = 1 returns, without its search)."""
  return _unit(jnp.asarray(x).astype(jnp.float32))


def check_alpha(alpha: float) -> float:
  """Returns alpha as a float; ValueError naming it unless it is a finite number >= 0."""
  if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha < float(
      "inf"):
    raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
  return float(alpha)


def check_neighbours(k: int, n: int, what: str) -> int:
  """Returns k as an int; ValueError naming `what` (e.g. "query expansion"), k and the index
  size n unless k is an int in [1, n]."""
  if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n:
    raise ValueError(f"the {what}'s k must be in [1, {n}] (the index size), got {k!r}")
  return int(k)


@functools.partial(jax.jit, static_argnames=("k", "alpha", "chunk_size", "method", "with_self"))
def _expand(queries, database, *, k, alpha, chunk_size, method, with_self):
  q = _unit(queries.astype(jnp.float32))
  x = _unit(database.astype(jnp.float32))
  # Neighbours of the unit vectors; a non-finite database row ranks last (NaN distances).
  _, idx = euclidean.euclidean_topk(q, x, k, chunk_size=chunk_size, method=method)
  finite = jnp.all(jnp.isfinite(x), axis=1)

  def add(i, acc):
    rows = jnp.take(idx, i, axis=1)
    nb = x[rows]                                              # (q, d)
    s = jnp.sum(q * nb, axis=1)                              # cosine similarity
    ok = finite[rows] & jnp.isfinite(s)
    w = jnp.where(ok, jnp.power(jnp.maximum(jnp.where(ok, s, 0.0), 0.0), alpha), 0.0)
    return acc + w[:, None] * jnp.where(ok[:, None], nb, 0.0)

  # A non-finite query row comes out NaN whatever its neighbours (the sum above skips them).
  bad = ~jnp.all(jnp.isfinite(q), axis=1, keepdims=True)
  start = jnp.zeros_like(q) if with_self else jnp.where(bad, 0.0, q)
  out = _unit(jax.lax.fori_loop(0, k, add, start))
  return jnp.where(bad, jnp.nan, out)


def alpha_query_expansion(queries: Any, database: Any, k: int, *, alpha: float = 3.0,
                          chunk_size: int | None = None, method: str = "auto") -> jax.Array:
  """Alpha-QE: each query re-described by itself plus its k nearest database rows.

  Args:
    queries: (q, d) float (computed in float32); q may be 0.
    database: (n, d) float, n >= 1 (e.g. `database_augmentation`'s output).
    k: neighbours per query, 1 <= k <= n, else ValueError naming k and n.
    alpha: weight exponent, finite >= 0 (0: average query expansion; 3: Radenovic et al.).
    chunk_size, method: as `euclidean_topk`.

  Returns:
    (q, d) float32 unit rows unit(unit(q) + sum_{i<k} max(s_i, 0)**alpha unit(x_{n_i})).
  """
  euclidean.check_float_pair(queries, database, "queries", "database")
  k = topk_lib.check_k(k, database.shape[0])
  return _expand(queries, database, k=k, alpha=check_alpha(alpha), chunk_size=chunk_size,
                 method=euclidean.check_method(method), with_self=False)


def database_augmentation(database: Any, k: int, *, alpha: float = 3.0,
                          chunk_size: int | None = None, method: str = "auto") -> jax.Array:
  """DBA: each database row re-described by its k nearest database rows (itself included).

  Args:
    database: (n, d) float, n >= 1.
    k: neighbours per row including the row itself, 1 <= k <= n (k = 1 only normalises).
    alpha, chunk_size, method: as `alpha_query_expansion`.

  Returns:
    (n, d) float32 unit rows unit(sum_{i<k} max(s_i, 0)**alpha unit(x_{n_i})).
  """
  euclidean.check_float_pair(database, database, "database", "database")
  k = topk_lib.check_k(k, database.shape[0])
  return _expand(database, database, k=k, alpha=check_alpha(alpha), chunk_size=chunk_size,
                 method=euclidean.check_method(method), with_self=True)
