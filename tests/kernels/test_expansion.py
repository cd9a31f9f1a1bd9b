"""alpha_query_expansion / database_augmentation vs a float64 NumPy reference.

Both implementations of the neighbour search (method="auto", "jax") on fresh random inputs,
odd sizes, k = 1 and k = n, ties, zero / NaN / inf rows, no queries, and inside a user's
jit / vmap.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbir_jax.kernels import alpha_query_expansion, database_augmentation
from cbir_jax.kernels.expansion import unit_rows
from tests.kernels import reference

METHODS = pytest.mark.parametrize("method", ["auto", "jax"])


def decided(queries, database, k, gap=1e-4):
  """bool[q]: rows whose k nearest unit database rows are decided beyond float32 rounding (the
  k-th and (k+1)-th float64 distances differ by more than `gap`); on fresh random data a
  near-tie at the k-th place may go either way in float32, so only these rows are compared."""
  q, x = reference.unit_rows(queries), reference.unit_rows(database)
  if k >= len(x):
    return np.ones(len(q), bool)
  d = np.sort(reference.l2(q, x), axis=1)
  return d[:, k] - d[:, k - 1] > gap


@METHODS
@pytest.mark.parametrize("q,n,d,k,alpha", [(7, 13, 5, 1, 3.0), (7, 13, 5, 3, 3.0),
                                           (7, 13, 5, 13, 1.0), (1, 301, 17, 10, 0.0),
                                           (33, 97, 3, 5, 2.5)])
def test_query_expansion_matches_float64_reference(method, rng, q, n, d, k, alpha):
  queries = rng.normal(size=(q, d)).astype(np.float32)
  database = rng.normal(size=(n, d)).astype(np.float32)
  got = np.asarray(alpha_query_expansion(queries, database, k, alpha=alpha, method=method))
  want = reference.expand(queries, database, k, alpha, with_self=False)
  assert got.dtype == np.float32 and got.shape == (q, d)
  ok = decided(queries, database, k)
  assert ok.mean() > 0.8
  np.testing.assert_allclose(got[ok], want[ok], atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@METHODS
@pytest.mark.parametrize("n,d,k,alpha", [(1, 4, 1, 3.0), (13, 5, 1, 3.0), (13, 5, 4, 3.0),
                                         (13, 5, 13, 0.0), (257, 9, 10, 3.0)])
def test_database_augmentation_matches_float64_reference(method, rng, n, d, k, alpha):
  database = rng.normal(size=(n, d)).astype(np.float32)
  got = np.asarray(database_augmentation(database, k, alpha=alpha, method=method))
  ok = decided(database, database, k)
  assert ok.mean() > 0.8
  np.testing.assert_allclose(got[ok], reference.expand(database, database, k, alpha,
                                                 with_self=True)[ok], atol=2e-5)
  if k == 1:  # Only itself: DBA with k = 1 just normalises.
    np.testing.assert_allclose(got, reference.unit_rows(database), atol=1e-6)
    np.testing.assert_allclose(unit_rows(database), got, atol=1e-6)


def test_alpha_zero_is_average_query_expansion(rng):
  queries = rng.normal(size=(4, 6)).astype(np.float32)
  database = rng.normal(size=(20, 6)).astype(np.float32)
  got = np.asarray(alpha_query_expansion(queries, database, 3, alpha=0.0))
  q, x = reference.unit_rows(queries), reference.unit_rows(database)
  _, idx = reference.rank(reference.l2(q, x), 3)
  np.testing.assert_allclose(got, reference.unit_rows(q + x[idx].sum(1)), atol=2e-5)


@METHODS
def test_ties_take_the_lower_database_index(method):
  # Two database rows at the same distance from the query: k = 1 takes row 1, not row 2.
  queries = np.array([[1.0, 0.0]], np.float32)
  database = np.array([[-1.0, 0.0], [0.6, 0.8], [0.6, -0.8]], np.float32)
  got = np.asarray(alpha_query_expansion(queries, database, 1, alpha=1.0, method=method))
  np.testing.assert_allclose(got, reference.unit_rows(np.array([[1.0 + 0.6 * 0.6, 0.6 * 0.8]])),
                             atol=1e-6)
  # Duplicated rows (heavy ties) agree with the reference.
  dup = np.repeat(database, 4, axis=0)
  np.testing.assert_allclose(
      np.asarray(database_augmentation(dup, 5, method=method)),
      reference.expand(dup, dup, 5, 3.0, with_self=True), atol=1e-6)


@METHODS
def test_zero_nan_and_inf_rows(method, rng):
  queries = rng.normal(size=(4, 5)).astype(np.float32)
  database = rng.normal(size=(11, 5)).astype(np.float32)
  queries[1] = np.nan
  queries[2] = 0.0
  queries[3, 0] = np.inf
  got = np.asarray(alpha_query_expansion(queries, database, 3, method=method))
  assert np.isnan(got[1]).all() and np.isnan(got[3]).all()
  np.testing.assert_allclose(got[0], reference.expand(queries[:1], database, 3, 3.0, False)[0],
                             atol=2e-5)
  # A zero query has similarity 0 to everything: weights 0 ** 3 = 0, it stays zero.
  np.testing.assert_array_equal(got[2], 0.0)
  # A NaN database row ranks last and contributes nothing, even when k = n takes it.
  bad = database.copy()
  bad[4] = np.nan
  k = len(bad)
  good = np.delete(database, 4, axis=0)
  np.testing.assert_allclose(
      np.asarray(alpha_query_expansion(queries[:1], bad, k, method=method)),
      reference.expand(queries[:1], good, k - 1, 3.0, False), atol=2e-5)
  dba = np.asarray(database_augmentation(bad, 3, method=method))
  assert np.isnan(dba[4]).all()
  np.testing.assert_allclose(np.delete(dba, 4, axis=0), reference.expand(good, good, 3, 3.0, True),
                             atol=2e-5)


def test_no_queries_and_bad_arguments(rng):
  database = rng.normal(size=(6, 3)).astype(np.float32)
  empty = np.asarray(alpha_query_expansion(np.zeros((0, 3), np.float32), database, 2))
  assert empty.shape == (0, 3)
  with pytest.raises(ValueError, match=r"k must be in \[1, 6\].*got k = 7"):
    alpha_query_expansion(database, database, 7)
  with pytest.raises(ValueError, match=r"k must be in \[1, 6\].*got k = 0"):
    database_augmentation(database, 0)
  with pytest.raises(ValueError, match="database is empty"):
    database_augmentation(np.zeros((0, 3), np.float32), 1)
  with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
    alpha_query_expansion(database, database, 2, alpha=-1)
  np.testing.assert_allclose(alpha_query_expansion(database, database, 2, alpha=np.float32(2)),
                             alpha_query_expansion(database, database, 2, alpha=2.0))
  with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got nan"):
    database_augmentation(database, 2, alpha=float("nan"))
  with pytest.raises(ValueError, match="queries have dim 4 but database have dim 3"):
    alpha_query_expansion(np.zeros((2, 4), np.float32), database, 2)
  with pytest.raises(TypeError, match="must be a float array"):
    database_augmentation(database.astype(np.int32), 2)


def test_composes_with_user_jit_and_vmap(rng):
  queries = rng.normal(size=(3, 5, 7)).astype(np.float32)   # three batches of five queries
  database = rng.normal(size=(40, 7)).astype(np.float32)

  @jax.jit
  def pipeline(batch, db):
    augmented = database_augmentation(db, 3)
    expanded = alpha_query_expansion(batch, augmented, 2)
    return jnp.argmin(jnp.sum((expanded[:, None] - augmented[None]) ** 2, -1), axis=1)

  batched = jax.vmap(pipeline, in_axes=(0, None))(queries, database)
  x = reference.expand(database, database, 3, 3.0, True)
  for b in range(3):
    want = reference.expand(queries[b], x, 2, 3.0, False)
    nearest = np.argmin(reference.l2(want, x), axis=1)
    np.testing.assert_array_equal(np.asarray(batched[b]), nearest)


@pytest.mark.parametrize("check_vma", [True, False])
def test_query_expansion_inside_shard_map_over_queries(rng, check_vma):
  from jax.sharding import Mesh, PartitionSpec as P  # pylint: disable=import-outside-toplevel
  mesh = Mesh(np.array(jax.devices()), ("q",))
  queries = rng.normal(size=(3 * len(jax.devices()), 6)).astype(np.float32)
  database = rng.normal(size=(29, 6)).astype(np.float32)
  program = jax.jit(jax.shard_map(lambda q, x: alpha_query_expansion(q, x, 4), mesh=mesh,
                                  in_specs=(P("q"), P()), out_specs=P("q"),
                                  check_vma=check_vma))
  ok = decided(queries, database, 4)
  np.testing.assert_allclose(np.asarray(program(queries, database))[ok],
                             reference.expand(queries, database, 4, 3.0, False)[ok], atol=2e-5)
