"""eval.protocol against an independent loop-based NumPy implementation on small random data."""

import importlib
import importlib.util

import numpy as np
import pytest

from cbir_jax.eval import metrics, protocol


def _reference_search(database: np.ndarray):
  """search(q, k) with float64 squared L2 and a stable sort: ties go to the lower index."""
  db = np.asarray(database, dtype=np.float64)

  def search(queries, k):
    d = ((np.asarray(queries, np.float64)[:, None, :] - db[None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order
  return search


def _reference_rows(queries, database, self_positions=None):
  """Per-query rankings by explicit loops (lower index first on ties), self removed if given."""
  rows = []
  for i, q in enumerate(np.asarray(queries, np.float64)):
    dist = [(float(((q - x) ** 2).sum()), j) for j, x in enumerate(np.asarray(database))]
    ranked = [j for _, j in sorted(dist)]
    if self_positions is not None:
      ranked.remove(int(self_positions[i]))
    rows.append(ranked)
  return np.array(rows)


def _reference_metrics(rows, qlab, dblab, k, self_excluded):
  """(paper mAP@k, mean P@k, mean R@k, mean AP@k with Z=min(R,k), mean full AP) by loops."""
  prec, rec, ap_k, ap = [], [], [], []
  for row, c in zip(rows, qlab):
    rel = [int(dblab[j] == c) for j in row]
    total = int(np.sum(dblab == c)) - (1 if self_excluded else 0)
    prec.append(sum(rel[:k]) / k)
    rec.append(sum(rel[:k]) / total if total else 0.0)

    def avg_prec(cut):
      hits, s = 0, 0.0
      for i, r in enumerate(rel[:cut]):
        if r:
          hits += 1
          s += hits / (i + 1)
      z = min(total, cut)
      return s / z if z else 0.0
    ap_k.append(avg_prec(k))
    ap.append(avg_prec(len(rel)))
  prec = np.array(prec)
  per_class = [prec[qlab == c].mean() for c in sorted(set(qlab.tolist()))]
  return float(np.mean(per_class)), prec.mean(), float(np.mean(rec)), float(np.mean(ap_k)), \
      float(np.mean(ap))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  # Small integer features: many exact distance ties, all exactly representable in float32.
  db = rng.integers(0, 3, size=(40, 3)).astype(np.float32)
  dblab = rng.integers(0, 4, size=40)
  queries = rng.integers(0, 3, size=(9, 3)).astype(np.float32)
  qlab = rng.integers(0, 4, size=9)
  return db, dblab, queries, qlab


def test_rank_database_heldout_matches_loops(data):
  db, _, queries, _ = data
  _, idx, seconds = protocol.rank_database(_reference_search(db), queries, len(db))
  np.testing.assert_array_equal(idx, _reference_rows(queries, db))
  assert idx.dtype == np.int64 and seconds >= 0


def test_rank_database_self_exclusion_with_ties(data):
  db, _, _, _ = data
  db = np.concatenate([db, db[:5]])  # Exact duplicates: a query ties with its twin.
  n = len(db)
  dist, idx, _ = protocol.rank_database(_reference_search(db), db, n,
                                        query_positions=np.arange(n))
  assert idx.shape == (n, n - 1) and dist.shape == (n, n - 1)
  np.testing.assert_array_equal(idx, _reference_rows(db, db, np.arange(n)))
  assert not np.any(idx == np.arange(n)[:, None])
  # Rows with an exact duplicate start with the lowest-index other copy at distance 0.
  for i in list(range(5)) + list(range(40, 45)):
    same = [j for j in range(n) if j != i and np.array_equal(db[j], db[i])]
    assert idx[i, 0] == same[0] and dist[i, 0] == 0
  # Distances stay paired with their entries.
  full_d, full_i = _reference_search(db)(db, n)
  for q in (0, 7, 44):
    lookup = dict(zip(full_i[q].tolist(), full_d[q].tolist()))
    np.testing.assert_allclose(dist[q], [lookup[j] for j in idx[q]])


def test_rank_database_k_checks(data):
  db, _, queries, _ = data
  search = _reference_search(db)
  with pytest.raises(ValueError, match=r"k must be in \[1, 40\]"):
    protocol.rank_database(search, queries, len(db), k=41)
  with pytest.raises(ValueError, match=r"k must be in \[1, 39\] .* self exclusion"):
    protocol.rank_database(search, db, len(db), query_positions=np.arange(40), k=40)
  with pytest.raises(ValueError, match="query_positions"):
    protocol.rank_database(search, db, len(db), query_positions=np.arange(3))
  _, idx, _ = protocol.rank_database(search, queries, len(db), k=5)
  assert idx.shape == (9, 5)


@pytest.mark.parametrize("query_chunk", [None, 1, 4])
@pytest.mark.parametrize("protocol_name", ["heldout", "database"])
def test_evaluate_search_matches_reference(data, protocol_name, query_chunk):
  db, dblab, queries, qlab = data
  if protocol_name == "database":
    queries, qlab, positions = db, dblab, np.arange(len(db))
  else:
    positions = None
  ks = (1, 5, 10)
  # Chunked or not, every number is the same (per-query values; curves are query means).
  res = protocol.evaluate_search("x", _reference_search(db), queries, qlab, dblab,
                                 protocol=protocol_name, ks=ks, recall_max=12,
                                 query_chunk=query_chunk)
  rows = _reference_rows(queries, db, positions)
  excluded = positions is not None
  for k in ks:
    paper, prec, rec, apk, ap = _reference_metrics(rows, qlab, dblab, k, excluded)
    assert res.metrics[f"paper_map@{k}"] == pytest.approx(paper)
    assert res.metrics[f"precision@{k}"] == pytest.approx(prec)
    assert res.metrics[f"recall@{k}"] == pytest.approx(rec)
    assert res.metrics[f"map@{k}"] == pytest.approx(apk)
  assert res.metrics["map"] == pytest.approx(ap)
  # Recall after 1..12 results, and per-class P@k.
  for m in (1, 6, 12):
    assert res.recall_curve[m - 1] == pytest.approx(
        _reference_metrics(rows, qlab, dblab, m, excluded)[2])
  assert res.recall_curve.shape == (12,)
  for c, row in res.per_class.items():
    sel = qlab == c
    assert row["paper_map@5"] == pytest.approx(
        _reference_metrics(rows[sel], qlab[sel], dblab, 5, excluded)[1])
  assert res.database_size == 40 and res.num_queries == len(qlab)
  assert set(res.to_json()) >= {"metrics", "recall_curve", "per_class", "search_seconds"}


def test_evaluate_search_rejects_bad_protocol(data):
  db, dblab, queries, qlab = data
  with pytest.raises(ValueError, match="protocol must be one of"):
    protocol.evaluate_search("x", _reference_search(db), queries, qlab, dblab, protocol="self")
  with pytest.raises(ValueError, match="needs query_positions"):
    protocol.evaluate_search("x", _reference_search(db), queries, qlab, dblab,
                             protocol="database")


def test_missing_hits_are_never_relevant():
  idx = np.array([[0, -1], [1, 0]])
  scores = metrics.score_ranking(idx, np.array([0, 0]), np.array([0, 0]), self_excluded=False,
                                 ks=(2,))
  assert scores["precision@2"] == pytest.approx(0.75)


def test_stratified_subset_is_seeded_and_proportional():
  labels = np.repeat(np.arange(4), [10, 20, 30, 40])
  a = protocol.stratified_subset(labels, 50, seed=3)
  np.testing.assert_array_equal(a, protocol.stratified_subset(labels, 50, seed=3))
  assert len(a) == 50 and len(np.unique(a)) == 50
  np.testing.assert_array_equal(np.bincount(labels[a]), [5, 10, 15, 20])
  assert len(protocol.stratified_subset(labels, 0, seed=0)) == 100


def test_sweep_bookkeeping():
  sweep = protocol.Sweep("K sweep", "K")
  sweep.add(800, {"m": 0.5})
  sweep.add(1000, {"m": 0.7})
  sweep.add(1200, {"m": 0.7})
  np.testing.assert_array_equal(sweep.values(), [800, 1000, 1200])
  np.testing.assert_allclose(sweep.series("m"), [0.5, 0.7, 0.7])
  assert sweep.best("m") == (1000, 0.7)  # First row wins a tie.
  with pytest.raises(ValueError, match="already has K=800"):
    sweep.add(800, {"m": 0.1})
  with pytest.raises(ValueError, match="missing"):
    sweep.series("other")
  assert sweep.to_json()["rows"][1] == {"value": 1000, "metrics": {"m": 0.7}}


def test_markdown_table_with_reference():
  text = protocol.markdown_table({"AL": {"a": 0.5, "b": 0.25}, "F6": {"a": 0.125}}, ["a", "b"],
                                 headers=["A", "B"], reference={"AL": [0.9, 0.8]})
  lines = text.strip().split("\n")
  assert lines[0] == "|  | A | B |"
  assert lines[2] == "| AL | 0.5000 | 0.2500 |"
  assert lines[3] == "| AL (paper) | 0.9000 | 0.8000 |"
  assert lines[4] == "| F6 | 0.1250 | - |"


@pytest.mark.skipif(importlib.util.find_spec("cbir_jax.index") is None
                    or not hasattr(importlib.import_module("cbir_jax.index"), "FloatIndex"),
                    reason="cbir_jax.index.FloatIndex not available yet")
def test_float_index_ranking_matches_reference(data):
  from cbir_jax.index import FloatIndex  # pylint: disable=g-import-not-at-top
  db, dblab, _, _ = data
  index = FloatIndex(db.shape[1])
  index.add(db)
  n = len(db)
  _, idx, _ = protocol.rank_database(index.search, db, n, query_positions=np.arange(n))
  np.testing.assert_array_equal(idx, _reference_rows(db, db, np.arange(n)))
  res = protocol.evaluate_search("idx", index.search, db, dblab, dblab, protocol="database",
                                 ks=(5,))
  ref = protocol.evaluate_search("ref", _reference_search(db), db, dblab, dblab,
                                 protocol="database", ks=(5,))
  assert res.metrics == pytest.approx(ref.metrics)


def test_choices_never_see_query_labels():
  """A tuning path takes validation data only; the sealed query set keeps its labels."""
  seed = 5
  rng = np.random.default_rng(seed)
  db = rng.normal(size=(40, 6)).astype(np.float32)
  dblab = rng.integers(0, 3, 40)
  val, vlab = db[:8] + 0.01, dblab[:8]
  sealed = protocol.SealedQueries(rng.normal(size=(5, 6)).astype(np.float32),
                                  rng.integers(0, 3, 5))
  assert not any(hasattr(sealed, name) for name in ("labels", "query_labels"))
  search = _reference_search(db)
  noisy = _reference_search(db + rng.normal(scale=5.0, size=db.shape).astype(np.float32))
  best, scores = protocol.choose_on_validation({"clean": (search, val), "noisy": (noisy, val)},
                                               vlab, dblab)
  assert best == "clean" and scores["clean"] >= scores["noisy"], f"seed {seed}"
  with pytest.raises(TypeError, match="never on the sealed query set"):
    protocol.choose_on_validation({"a": (search, sealed.vectors)}, sealed, dblab)
  with pytest.raises(TypeError, match="never on the sealed query set"):
    protocol.choose_on_validation({"a": (search, sealed)}, vlab, dblab)
  final = sealed.evaluate("final", search, dblab, ks=(5,))
  assert final.num_queries == 5 and final.protocol == "heldout"


def test_ids_to_positions_names_unknown_ids():
  database_ids = np.array([40, 10, 30])
  np.testing.assert_array_equal(protocol.ids_to_positions(database_ids, np.array([[30, 40]])),
                                [[2, 0]])
  with pytest.raises(ValueError, match=r"ids \[11\] are not in the database"):
    protocol.ids_to_positions(database_ids, np.array([10, 11]))
