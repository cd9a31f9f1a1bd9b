"""Metrics on hand-computed rankings and against an independent loop implementation."""

import numpy as np
import pytest

from cbir_jax.eval import metrics


def test_precision_and_paper_map_hand_made():
  # Two classes, unbalanced: class 0 has two queries, class 1 one.
  ranked = np.array([[0, 0, 1, 0],   # query of class 0: P@2 = 1, P@4 = 3/4
                     [1, 0, 0, 1],   # query of class 0: P@2 = 1/2, P@4 = 2/4
                     [1, 1, 1, 0]])  # query of class 1: P@2 = 1, P@4 = 3/4
  q = np.array([0, 0, 1])
  np.testing.assert_allclose(metrics.precision_at_k(ranked, q, 2), [1.0, 0.5, 1.0])
  # Class means: class 0 -> (1 + .5)/2 = .75, class 1 -> 1; paper mAP = (.75 + 1)/2.
  assert metrics.paper_map_at_k(ranked, q, 2) == pytest.approx(0.875)
  # Not the plain query mean (2.5 / 3), which is what makes formula (3) class-balanced.
  assert metrics.paper_map_at_k(ranked, q, 2) != pytest.approx(2.5 / 3)
  assert metrics.paper_map_at_k(ranked, q, 4) == pytest.approx(((0.75 + 0.5) / 2 + 0.75) / 2)
  assert metrics.per_class_precision_at_k(ranked, q, 2) == {0: 0.75, 1: 1.0}


def test_average_precision_hand_made():
  ranked = np.array([[1, 0, 1, 0, 0]])  # relevant at ranks 1 and 3
  q = np.array([1])
  # Hashing-literature AP@5: (1/1 + 2/3) / 2.
  assert metrics.average_precision_at_k(ranked, q, 5)[0] == pytest.approx((1 + 2 / 3) / 2)
  # IR AP with 4 relevant in the database: (1 + 2/3) / min(4, 5).
  assert metrics.average_precision_at_k(ranked, q, 5, num_relevant=np.array([4]))[0] == (
      pytest.approx((1 + 2 / 3) / 4))
  # Truncated at k = 2 with 4 relevant: 1 / min(4, 2).
  assert metrics.average_precision_at_k(ranked, q, 2, np.array([4]))[0] == pytest.approx(0.5)
  # No relevant item retrieved: AP is 0, not NaN.
  assert metrics.average_precision_at_k(np.array([[0, 0]]), q)[0] == 0.0


def test_recall_and_pr_curve_hand_made():
  ranked = np.array([[1, 0, 1, 1], [0, 0, 0, 2]])
  q = np.array([1, 2])
  total = np.array([3, 2])
  np.testing.assert_allclose(metrics.recall_at_k(ranked, q, 3, total), [2 / 3, 0.0])
  prec, rec = metrics.pr_curve(ranked, q, total)
  np.testing.assert_allclose(prec, [(1 + 0) / 2, (0.5 + 0) / 2, (2 / 3 + 0) / 2, (3 / 4 + 1 / 4) / 2])
  np.testing.assert_allclose(rec, [(1 / 3) / 2, (1 / 3) / 2, (2 / 3) / 2, (1 + 0.5) / 2])


def _reference_ap(rel_row, z):
  """Independent loop implementation of AP."""
  hits, acc = 0, 0.0
  for i, r in enumerate(rel_row, start=1):
    if r:
      hits += 1
      acc += hits / i
  return acc / z if z > 0 else 0.0


def test_map_against_loop_reference_random(rng):
  ranked = rng.integers(0, 4, size=(37, 23))
  q = rng.integers(0, 4, size=37)
  total = rng.integers(5, 30, size=37)
  for k in (1, 7, 23):
    got = metrics.average_precision_at_k(ranked, q, k, total)
    want = [_reference_ap(ranked[i, :k] == q[i], min(total[i], k)) for i in range(37)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = metrics.average_precision_at_k(ranked, q, k)
    want = [_reference_ap(ranked[i, :k] == q[i], int((ranked[i, :k] == q[i]).sum()))
            for i in range(37)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_full_ranking_map_is_one_for_perfect_ranking():
  db = np.array([0, 0, 1, 1, 2])
  ranked = np.array([[0, 0, 1, 1, 2], [2, 0, 0, 1, 1]])
  q = np.array([0, 2])
  total = metrics.count_relevant(q, db)
  np.testing.assert_array_equal(total, [2, 1])
  assert metrics.mean_average_precision(ranked, q, None, total) == pytest.approx(1.0)


def test_count_relevant_and_drop_self():
  assert metrics.count_relevant(np.array([0, 1, 5]), np.array([0, 0, 1]), True).tolist() == [1, 0, 0]
  idx = np.array([[3, 0, 5], [1, 2, 4], [0, 3, 3]])
  out = metrics.drop_self_matches(idx, np.array([0, 9, 3]), k=2)
  np.testing.assert_array_equal(out, [[3, 5], [1, 2], [0, 3]])


@pytest.mark.parametrize("k", [0, 5, -1])
def test_bad_k_is_a_clear_error(k):
  with pytest.raises(ValueError, match=f"k must be in \\[1, 4\\].*got {k}"):
    metrics.precision_at_k(np.zeros((2, 4), int), np.zeros(2, int), k)


def test_shape_errors_name_shapes():
  with pytest.raises(ValueError, match="query_labels must have shape \\(2,\\)"):
    metrics.precision_at_k(np.zeros((2, 4), int), np.zeros(3, int), 1)
  with pytest.raises(ValueError, match="2-D"):
    metrics.precision_at_k(np.zeros(4, int), np.zeros(4, int), 1)


def test_ranking_scorer_is_chunk_invariant_and_matches_the_parts():
  seed = 11
  rng = np.random.default_rng(seed)
  db_labels = rng.integers(0, 5, 60)
  q_labels = rng.integers(0, 5, 23)
  indices = np.stack([rng.permutation(60) for _ in range(23)])
  whole = metrics.score_ranking(indices, q_labels, db_labels, ks=(1, 5, 60))
  scorer = metrics.RankingScorer(db_labels, ks=(1, 5, 60))
  for start in range(0, 23, 7):
    scorer.add(indices[start:start + 7], q_labels[start:start + 7])
  assert scorer.result() == pytest.approx(whole), f"seed {seed}"
  ranked = db_labels[indices]
  total = metrics.count_relevant(q_labels, db_labels)
  assert whole["paper_map@5"] == pytest.approx(metrics.paper_map_at_k(ranked, q_labels, 5))
  assert whole["precision@5"] == pytest.approx(metrics.precision_at_k(ranked, q_labels, 5).mean())
  assert whole["recall@5"] == pytest.approx(metrics.recall_at_k(ranked, q_labels, 5, total).mean())
  assert whole["map@5"] == pytest.approx(
      metrics.mean_average_precision(ranked, q_labels, 5, total))
  assert whole["map"] == pytest.approx(metrics.mean_average_precision(ranked, q_labels, None,
                                                                      total))
  with pytest.raises(ValueError, match="no queries were scored"):
    metrics.RankingScorer(db_labels).result()
