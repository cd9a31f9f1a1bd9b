"""eval.device_scoring: the device path of evaluate_search equals the host path (CPU-forced)."""

import numpy as np
import pytest

from cbir_jax.eval import device_scoring, metrics, protocol, ranking
from cbir_jax.index import BinaryIndex, FloatIndex

TOL = 1e-6


def _assert_same(device: protocol.RetrievalResult, host: protocol.RetrievalResult) -> None:
  assert device.metrics.keys() == host.metrics.keys()
  for key, value in host.metrics.items():
    assert device.metrics[key] == pytest.approx(value, abs=TOL), key
  assert device.per_class.keys() == host.per_class.keys()
  for c, row in host.per_class.items():
    assert device.per_class[c] == pytest.approx(row, abs=TOL), c
  for curve in ("recall_curve", "pr_precision", "pr_recall"):
    a, b = getattr(device, curve), getattr(host, curve)
    assert a.shape == b.shape, curve
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL, err_msg=curve)
  assert (device.num_queries, device.database_size, device.protocol) == (
      host.num_queries, host.database_size, host.protocol)


def _both(search, queries, qlab, dblab, **kwargs):
  host = protocol.evaluate_search("h", search, queries, qlab, dblab, device_scoring=False,
                                  **kwargs)
  device = protocol.evaluate_search("d", search, queries, qlab, dblab, device_scoring=True,
                                    **kwargs)
  return device, host


def _float_data(rng, n, q, classes=4):
  # Small integers: many exact distance ties, every distance exact in float32.
  db = rng.integers(0, 3, size=(n, 3)).astype(np.float32)
  queries = rng.integers(0, 3, size=(q, 3)).astype(np.float32)
  return db, rng.integers(0, classes, size=n), queries, rng.integers(0, classes, size=q)


@pytest.mark.parametrize("protocol_name", ["heldout", "database"])
@pytest.mark.parametrize("kind", ["float", "binary"])
def test_device_path_equals_host_path_with_ties(rng, kind, protocol_name):
  n = 61  # odd; with self exclusion the ranking has 60 entries
  if kind == "float":
    db, dblab, queries, qlab = _float_data(rng, n, 13, classes=4)
    index = FloatIndex(3)
  else:
    db = rng.integers(0, 2**32, size=(n, 2), dtype=np.uint32)
    db[:, 1] = 0
    db[:, 0] &= np.uint32(0x7)  # 4 distinct distances at most: ties everywhere
    db[20:25] = db[3]  # exact duplicates
    queries = np.concatenate([db[[3, 7]], db[40:51] ^ np.uint32(1)])
    dblab, qlab = rng.integers(0, 4, size=n), rng.integers(0, 4, size=13)
    index = BinaryIndex(64)
  qlab[0] = 9  # a class absent from the database: no relevant item, AP and recall 0
  index.add(db)
  if protocol_name == "database":
    queries, qlab, limit = db, dblab, n - 1
  else:
    limit = n
  device, host = _both(ranking.full_ranking_search(index), queries, qlab, dblab,
                       protocol=protocol_name, ks=(1, 5, limit), recall_max=limit,
                       query_chunk=4)
  _assert_same(device, host)
  assert host.metrics[f"recall@{limit}"] > 0


@pytest.mark.parametrize("query_chunk", [1, 3, 7, None])
def test_chunking_changes_nothing(rng, query_chunk):
  db, dblab, queries, qlab = _float_data(rng, 50, 7)
  index = FloatIndex(3)
  index.add(db)
  search = ranking.full_ranking_search(index)
  whole = protocol.evaluate_search("d", search, queries, qlab, dblab, protocol="heldout",
                                   ks=(2, 10), device_scoring=True, query_chunk=100)
  chunked = protocol.evaluate_search("d", search, queries, qlab, dblab, protocol="heldout",
                                     ks=(2, 10), device_scoring=True, query_chunk=query_chunk)
  _assert_same(chunked, whole)


def test_single_query_and_subset_of_database_queries(rng):
  db, dblab, _, _ = _float_data(rng, 33, 1)
  index = FloatIndex(3)
  index.add(db)
  search = ranking.full_ranking_search(index)
  _assert_same(*_both(search, db[[5]], dblab[[5]], dblab, protocol="heldout", ks=(1, 33)))
  positions = np.array([30, 2, 2, 17])  # database protocol on some items, one twice
  _assert_same(*_both(search, db[positions], dblab[positions], dblab, protocol="database",
                      query_positions=positions, ks=(3, 32), query_chunk=3))


def test_random_float_features_and_permuted_ids(rng):
  db = rng.normal(size=(120, 8)).astype(np.float32)
  dblab = rng.integers(0, 5, size=120)
  order = rng.permutation(120)  # index ids a permutation of the database positions
  index = FloatIndex(8)
  index.add(db[order], ids=order)
  queries = rng.normal(size=(9, 8)).astype(np.float32)
  qlab = rng.integers(0, 5, size=9)
  search = ranking.full_ranking_search(index)
  _assert_same(*_both(search, queries, qlab, dblab, protocol="heldout", ks=(5, 120)))
  _assert_same(*_both(search, db, dblab, dblab, protocol="database", ks=(5, 119),
                      query_chunk=50))


def test_any_search_is_scored_from_its_ranked_ids(rng):
  """A plain `search` callable (no distance blocks): its ranked ids are scored on the device."""
  db, dblab, queries, qlab = _float_data(rng, 40, 6)
  index = FloatIndex(3)
  index.add(db)
  for name, positions in (("heldout", None), ("database", np.arange(40))):
    q, ql = (queries, qlab) if positions is None else (db, dblab)
    _assert_same(*_both(index.search, q, ql, dblab, protocol=name, ks=(4,), query_chunk=5))


def test_add_positions_scores_missing_hits_and_short_rankings():
  """Ranked ids with -1 (missing) and r < n equal RankingScorer's per-query values."""
  dblab = np.array([0, 1, 0, 2, 1, 0])
  indices = np.array([[0, -1, 2, 5], [4, 1, 3, -1], [3, 0, 1, 2]])
  qlab = np.array([0, 1, 7])
  scorer = device_scoring.DeviceRankingScorer(dblab, ks=(1, 4), self_excluded=False,
                                              max_groups=3)
  per_query, _, recall = scorer.add_positions(indices, qlab).result()
  want = metrics.score_ranking(indices, qlab, dblab, ks=(1, 4))
  assert per_query.result() == pytest.approx(want, abs=TOL)
  np.testing.assert_allclose(per_query.per_query("precision@4"), [0.75, 0.5, 0.0])
  total = metrics.count_relevant(qlab, dblab)
  _, ref_recall = metrics.pr_curve(metrics.ranked_labels_of(indices, dblab), qlab, total)
  np.testing.assert_allclose(recall, ref_recall, atol=1e-12)


def test_bad_inputs_name_the_problem(rng):
  dblab = np.arange(10) % 3
  scorer = device_scoring.DeviceRankingScorer(dblab, ks=(11,), self_excluded=False)
  with pytest.raises(ValueError, match=r"k must be in \[1, 10\]"):
    scorer.add_distances(np.zeros((2, 10), np.float32), np.array([0, 1]))
  scorer = device_scoring.DeviceRankingScorer(dblab, ks=(3,), self_excluded=True)
  with pytest.raises(ValueError, match="needs query_positions"):
    scorer.add_distances(np.zeros((2, 10), np.float32), np.array([0, 1]))
  with pytest.raises(ValueError, match=r"shape \(q, 10\)"):
    scorer.add_distances(np.zeros((2, 9), np.float32), np.array([0, 1]), np.array([0, 1]))
  with pytest.raises(ValueError, match="permutation"):
    device_scoring.DeviceRankingScorer(dblab, ks=(3,), self_excluded=False,
                                       column_positions=np.arange(1, 11))
  with pytest.raises(ValueError, match="need at least one query"):
    protocol.evaluate_search("d", lambda q, k: None, np.zeros((0, 3)), np.zeros(0, int), dblab,
                             protocol="heldout", device_scoring=True)
  with pytest.raises(ValueError, match="values must have the keys"):
    metrics.RankingScorer(dblab, ks=(3,)).add_values({"map": np.zeros(2)}, np.array([0, 1]))


def test_sort_keys_order_like_numpys_stable_sort(rng):
  """-0.0 ties 0.0, NaN (either sign) last, infinities and int32 extremes in place."""
  special = np.array([0.0, -0.0, np.inf, np.nan, -np.nan, 1e-30, -np.inf, 3.0, -2.0], np.float32)
  floats = np.concatenate([special, rng.choice(special, 30),
                           rng.normal(size=30).astype(np.float32)])[None]
  ints = np.concatenate([[0, -1, 2**31 - 1, -2**31], rng.integers(-5, 5, 40)]).astype(np.int32)
  for d in (floats, ints[None]):
    keys = np.asarray(device_scoring._sort_keys(d))  # pylint: disable=protected-access
    np.testing.assert_array_equal(np.argsort(keys, axis=1, kind="stable"),
                                  np.argsort(d, axis=1, kind="stable"))
